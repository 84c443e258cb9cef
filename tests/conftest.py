import json
from functools import lru_cache
from pathlib import Path

import pytest
import torch

REFERENCE_DIR = Path(__file__).parent / "reference" / "torchvision"


@lru_cache(maxsize=None)
def torchvision_reference(name: str) -> dict:
    return json.loads((REFERENCE_DIR / f"{name}.json").read_text())


def torchvision_reference_names() -> list[str]:
    return sorted(p.stem for p in REFERENCE_DIR.glob("*.json") if p.stem not in ("summary", "mobilenet_v2_width_table"))


# `make test` runs on two pytest-xdist workers. Each test module runs whole on one worker, so that its module
# fixtures are built once, and the modules sharing a session fixture run on one worker together, so that it is
# built once too. (xdist's own --dist loadgroup marks do not take with pytest 9: xdist 3.8 renames the node id
# through an attribute pytest 9 no longer reads. Its scheduler hook does.)
SESSION_FIXTURE_OF_MODULE = {
    "tests/test_android.py": "_app_exports",
    "tests/test_web_demo.py": "_app_exports",
    "tests/test_executorch.py": "_app_exports",
    "tests/test_latency.py": "_app_exports",
    "tests/test_demo_model.py": "_app_exports",
    "tests/test_sweep.py": "serial_sweep",
    "tests/test_ray.py": "serial_sweep",
}
SHARED_SESSION_FIXTURES = {"_app_exports", "serial_sweep"}

# Work units handed out longest first, so that no long one starts last beside an idle worker (xdist's default
# order, by number of tests, started the three-minute geffnet module last: 22:51 against 19:40). Rough minutes
# per unit on a quiet machine, from `--durations`; the units not listed are under two minutes and follow.
LONGEST_FIRST = ("_app_exports",           # ~9: two exports, the Android and web apps, ExecuTorch, latency
                 "serial_sweep",           # ~5: a serial sweep and the same sweep on Ray
                 "tests/test_export.py",   # ~5: representatives through every format
                 "tests/test_console.py",  # ~4: `make export` at 96 px
                 "tests/test_thirdparty.py",
                 "tests/test_int8_mixed.py",
                 "tests/test_validate.py",
                 "tests/test_int8_finetune.py",
                 "tests/test_api.py")


def work_unit(nodeid: str) -> str:
    module = nodeid.split("::", 1)[0]
    return SESSION_FIXTURE_OF_MODULE.get(module, module)


def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    config.option.loadscopereorder = False  # keep the collection order set below

    class ByModuleAndSharedFixture(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    return ByModuleAndSharedFixture(config, log)


def pytest_collection_modifyitems(items):
    rank = {unit: i for i, unit in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(work_unit(item.nodeid), len(rank)))  # stable: the rest keep their order
    # the table above is what keeps a shared session fixture to one worker: a module using one must be in it
    for item in items:
        module = item.nodeid.split("::", 1)[0]
        for fixture in SHARED_SESSION_FIXTURES & set(getattr(item, "fixturenames", ())):
            if SESSION_FIXTURE_OF_MODULE.get(module) != fixture:
                raise pytest.UsageError(f"{module} uses {fixture}: add it to SESSION_FIXTURE_OF_MODULE in conftest.py")


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)


# The apps' two variants, exported once for the session: the Android assets, the web site, the ExecuTorch
# tests and the demo model's full-test-set validation all read them (each through a copy of its own). Four
# modules exported the trained demo model four times before (about 4 minutes of `make test`).
APP_VARIANTS = {"mobilenet_v2_a0.35_r224": ["--model", "mobilenet_v2", "--alpha", "0.35", "--resolution", "224",
                                           "--formats", "onnx,tflite,executorch"],
                "mobilenet_v2_a0.5_r32": ["--model", "mobilenet_v2", "--weights", "fashion-mnist-demo"]}


@pytest.fixture(scope="session")
def _app_exports(tmp_path_factory):
    import subprocess
    import sys

    root = tmp_path_factory.mktemp("app-exports")
    for name, args in APP_VARIANTS.items():
        result = subprocess.run([sys.executable, "-m", "edgecnn", "export", *args, "--out", str(root / name),
                                 "--no-validate"], capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, result.stderr[-3000:]
    return root


@pytest.fixture(scope="module")
def app_exports(_app_exports, tmp_path_factory):
    """Per test module, a copy of the shared export root (`mobilenet_v2_a0.35_r224`: ONNX, TFLite and ExecuTorch, random
    weights; `mobilenet_v2_a0.5_r32`: every format of the trained Fashion-MNIST demo model)."""
    import shutil

    copy = tmp_path_factory.mktemp("export") / "export"
    shutil.copytree(_app_exports, copy)
    return copy



@pytest.fixture(scope="session")
def serial_sweep(tmp_path_factory):
    """One small serial sweep for the session (mobilenet_v2 at alpha 0.35 and 0.5, 32 px, TFLite, labelled
    photos): `test_sweep` checks it, and `test_ray` compares a sweep on Ray with it. (request, summary)"""
    from PIL import Image

    from edgecnn.data.calibration import load_calibration
    from edgecnn.formats import parse_formats
    from edgecnn.harness.latency import LatencyOptions
    from edgecnn.sweeps.sweep import SweepRequest, run_sweep

    root = tmp_path_factory.mktemp("sweep")
    labelled = root / "labelled"
    for i, image in enumerate(load_calibration(32, 6, progress=False).images):
        folder = labelled / str(i % 2)  # class indices as folder names
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{i}.png")
    request = SweepRequest("mobilenet_v2", [0.35, 0.5], [32], parse_formats("tflite"), root / "serial",
                           calib_count=8, labels_dir=labelled, latency=LatencyOptions(threads=(1,), runs=20))
    return request, run_sweep(request)
