"""A model edgecnn does not define: `export --model MODULE:ATTR` and `edgecnn.export(model, ...)`.

Bad input gets one line and exit 2 before any conversion; a good model is exported, validated and run from its
folder without its code; the folder's reference program is refused when it could run code."""

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import edgecnn
from edgecnn.cli import main
from edgecnn.schema.manifest import MANIFEST_FILE, open_export
from edgecnn.util.errors import UsageError

MODELS_PY = '''
import torch
from torch import nn


class Tiny(nn.Module):
    def __init__(self, classes: int = 10, spatial: bool = False, branchy: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8, classes)
        self.spatial, self.branchy = spatial, branchy

    def forward(self, x):
        x = torch.relu(self.conv(x))
        if self.spatial:
            return x
        if self.branchy and x.sum() > 0:  # depends on the values: torch.export cannot trace it
            x = x * 2
        return self.fc(x.mean((2, 3)))


def make_number():
    return 3


def broken(depth: int = 1):
    raise ValueError(f"depth {depth} is not supported")
'''


@pytest.fixture(scope="module")
def models_py(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("user") / "my_models.py"
    path.write_text(MODELS_PY)
    return path


def _refused(capsys, *args) -> str:
    code = main(["export", *args, "--formats", "onnx", "--no-validate"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.mark.quick
def test_a_module_that_does_not_exist_is_named_with_close_matches(capsys):
    err = _refused(capsys, "--model", "geffnett:create_model", "--resolution", "32")
    assert "no module named 'geffnett'" in err and "did you mean geffnet" in err


@pytest.mark.quick
def test_an_attribute_that_does_not_exist_is_named_with_close_matches(capsys, models_py):
    err = _refused(capsys, "--model", f"{models_py}:Tiyn", "--resolution", "32")
    assert "has no attribute 'Tiyn'" in err and "did you mean Tiny" in err


@pytest.mark.quick
def test_a_callable_that_raises_gives_its_message(capsys, models_py):
    err = _refused(capsys, "--model", f"{models_py}:broken", "--model-args", '{"depth": 7}', "--resolution", "32")
    assert "raised ValueError: depth 7 is not supported" in err


@pytest.mark.quick
def test_a_return_value_that_is_no_module_is_refused(capsys, models_py):
    err = _refused(capsys, "--model", f"{models_py}:make_number", "--resolution", "32")
    assert "returned a int, not a torch.nn.Module" in err


@pytest.mark.quick
def test_an_output_that_is_not_n_by_classes_is_refused(capsys, models_py):
    err = _refused(capsys, "--model", f"{models_py}:Tiny", "--model-args", '{"spatial": true}', "--resolution", "32")
    assert "to (1, 8, 32, 32), not (1, classes) logits" in err


@pytest.mark.quick
def test_classes_that_disagree_with_the_model_are_refused(capsys, models_py):
    err = _refused(capsys, "--model", f"{models_py}:Tiny", "--num-classes", "5", "--resolution", "32")
    assert "--num-classes 5, but the model has 10 outputs" in err


@pytest.mark.quick
def test_a_model_torch_export_cannot_trace_says_where_and_what_to_do(capsys, models_py, tmp_path):
    err = _refused(capsys, "--model", f"{models_py}:Tiny", "--model-args", '{"branchy": true}', "--resolution",
                   "32", "--out", str(tmp_path / "e"))
    assert "torch.export cannot trace the model" in err and "control flow" in err
    assert not (tmp_path / "e").exists()


@pytest.mark.quick
def test_a_state_dict_that_does_not_fit_names_the_keys(capsys, models_py, tmp_path):
    weights = tmp_path / "w.pt"
    torch.save({"conv.weight": torch.zeros(8, 3, 3, 3), "head.weight": torch.zeros(10, 8)}, weights)
    err = _refused(capsys, "--model", f"{models_py}:Tiny", "--weights", str(weights), "--resolution", "32")
    assert "missing" in err and "conv.bias" in err and "unexpected" in err and "head.weight" in err


@pytest.mark.quick
def test_zoo_options_on_a_users_model_and_back_are_refused(capsys, models_py):
    assert "--alpha applies to the zoo's models" in _refused(
        capsys, "--model", f"{models_py}:Tiny", "--alpha", "0.5", "--resolution", "32")
    assert "needs --resolution" in _refused(capsys, "--model", f"{models_py}:Tiny")
    assert "--model-args is for your own model" in _refused(
        capsys, "--model", "mobilenet_v2", "--model-args", "{}")


@pytest.mark.quick
def test_a_checkpoint_trained_of_a_model_from_elsewhere_fits_only_that_model(capsys):
    name = "fashion-mnist-geffnet-mnasnet-050"
    err = _refused(capsys, "--model", "geffnet:create_model", "--model-args", '{"model_name": "mnasnet_100"}',
                   "--weights", name)
    assert (f"--weights {name} was trained as geffnet:create_model --model-args "
            "'{\"model_name\": \"mnasnet_050\", \"num_classes\": 10}', not '{\"model_name\": \"mnasnet_100\"}'") in err
    assert f"--weights {name} is for geffnet:create_model, not mobilenet_v2" in _refused(
        capsys, "--model", "mobilenet_v2", "--weights", name)


@pytest.mark.quick
def test_the_python_api_refuses_what_is_not_a_module():
    with pytest.raises(UsageError, match="takes a torch.nn.Module, got function"):
        edgecnn.export(lambda x: x, resolution=32)


# Two small CNNs in styles the zoo does not use. ShuffleBlock: functional calls only (weights as parameters,
# F.conv2d, F.batch_norm), a channel shuffle, a split and a concatenation. GatedNet: a custom activation
# module, a hard-swish as an autograd.Function, a squeeze-excite gate written out with a TorchScript
# hard-sigmoid (so torch.fx cannot trace it: only the passes on the torch.export graph see it), pools of
# three kinds.
class ShuffleNetLike(nn.Module):
    def __init__(self, classes: int = 6) -> None:
        super().__init__()
        self.w_stem = nn.Parameter(torch.randn(16, 3, 3, 3) * 0.2)
        self.w_dw = nn.Parameter(torch.randn(8, 1, 3, 3) * 0.3)
        self.w_pw = nn.Parameter(torch.randn(8, 8, 1, 1) * 0.3)
        self.register_buffer("bn_mean", torch.randn(8) * 0.1)
        self.register_buffer("bn_var", torch.rand(8) + 0.5)
        self.w_fc = nn.Parameter(torch.randn(classes, 16) * 0.2)

    def forward(self, x):
        x = F.relu(F.conv2d(x, self.w_stem, stride=2, padding=1))
        left, right = x.chunk(2, dim=1)
        right = F.conv2d(right, self.w_dw, padding=1, groups=8)
        right = F.relu6(F.batch_norm(right, self.bn_mean, self.bn_var, training=False))
        right = F.conv2d(right, self.w_pw)
        x = torch.cat([left, right], dim=1)
        n, c, h, w = x.shape
        x = x.reshape(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)  # channel shuffle
        return F.linear(x.mean((2, 3)), self.w_fc)


class Swishish(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(x)


class HardSwish(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x * F.relu6(x + 3) / 6

    @staticmethod
    def backward(ctx, grad):
        return grad


@torch.jit.script
def scripted_hard_sigmoid(x: torch.Tensor) -> torch.Tensor:  # torch.fx cannot trace through TorchScript
    return F.relu6(x + 3.0) / 6.0


class GatedNet(nn.Module):
    def __init__(self, classes: int = 6) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.ReLU())
        self.pool = nn.MaxPool2d(3, 2, 1)
        self.block = nn.Sequential(nn.Conv2d(16, 16, 3, 1, 1, groups=16), nn.BatchNorm2d(16), Swishish())
        self.squeeze = nn.Conv2d(16, 4, 1)
        self.excite = nn.Conv2d(4, 16, 1)
        self.smooth = nn.AvgPool2d(3, 1, 1)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, classes))

    def forward(self, x):
        x = self.pool(self.stem(x))
        y = self.block(x)
        gate = scripted_hard_sigmoid(self.excite(F.relu(self.squeeze(y.mean((2, 3), keepdim=True)))))
        x = x + HardSwish.apply(y * gate)
        return self.head(self.smooth(x))


def _trained_like(model: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):  # statistics of a trained net, not the identity
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    return model.eval()


@pytest.fixture(scope="module")
def gated_export(tmp_path_factory):
    """GatedNet through the Python API, every format but Core ML, validated (no timing)."""
    out = tmp_path_factory.mktemp("api")
    model = _trained_like(GatedNet())
    result = edgecnn.export(model, resolution=32, formats="onnx,tflite,executorch",
                            labels=[f"kind {i}" for i in range(6)], out=out, calib_count=8, latency=False)
    result.model = model  # for the inspection, which names the user's modules
    return result


def test_the_python_api_exports_and_validates_a_model_built_here(gated_export):
    manifest = gated_export.manifest
    assert gated_export.target.name == "GatedNet_r32" and manifest.family == "user model"
    assert manifest.origin is not None and manifest.origin.class_name.endswith("test_user_model.GatedNet")
    assert manifest.origin.built_by.startswith("python: ")
    files = {a.path: a for a in manifest.artifacts}
    assert set(files) == {"model.onnx", "model_fp32.tflite", "model_int8.tflite", "model_fp32.pte", "model_int8.pte"}
    checks = {c.path: c for c in gated_export.report.artifacts}
    for path in ("model.onnx", "model_fp32.tflite", "model_fp32.pte"):
        assert checks[path].status.value == "passed" and checks[path].parity.worst_cosine > 0.9999
    int8 = files["model_int8.tflite"].details
    # pure int8 (the export checks it) in one piece: the padded max pool became a zero pad and a pool, the
    # average pool a depthwise conv, on the torch.export graph (torch.fx cannot trace GatedNet)
    assert int8.xnnpack_partitions == 1, int8.operators
    assert "AVERAGE_POOL_2D" not in int8.operators and "PADV2" not in int8.operators and "PAD" in int8.operators
    assert files["model_int8.pte"].details.outside_delegate == {}
    # the float files too: no PADV2 for LiteRT, and the padded average pool as a conv inside ExecuTorch's delegate
    assert files["model_fp32.tflite"].details.xnnpack_partitions == 1
    assert files["model_fp32.pte"].details.xnnpack_partitions == 1
    assert (gated_export.target / "labels.txt").read_text().splitlines()[0] == "kind 0"


def test_validate_and_classify_run_from_the_folder_without_the_models_code(gated_export, tmp_path):
    folder = str(gated_export.target)
    script = (
        "import sys; from edgecnn.cli import main; code = main(sys.argv[1:]);"
        "assert 'test_user_model' not in sys.modules; sys.exit(code)"
    )
    from PIL import Image

    Image.fromarray((torch.rand(40, 50, 3) * 255).byte().numpy()).save(tmp_path / "photo.png")
    for args in (["validate", folder, "--count", "4", "--no-latency", "--out", str(tmp_path / "v")],
                 ["classify", folder, str(tmp_path / "photo.png")]):
        result = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-2000:]
    assert "PyTorch" in result.stdout and "kind " in result.stdout


def _planted(folder: Path, target: Path, marker: Path) -> None:
    """A copy of `folder` whose reference program carries a pickle that creates `marker` when unpickled, with
    the manifest's sha256 updated to match, as someone handing the folder around could do."""
    import shutil

    from edgecnn.schema.artifacts import sha256_of

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    shutil.copytree(folder, target)
    program = target / "reference.pt2"
    with zipfile.ZipFile(program) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    prefix = next(iter(entries)).split("/", 1)[0]
    config_name = f"{prefix}/data/weights/model_weights_config.json"
    config = json.loads(entries[config_name])
    first = next(iter(config["config"]))
    config["config"][first]["use_pickle"] = True
    entries[config_name] = json.dumps(config).encode()
    buffer = io.BytesIO()
    torch.save(Payload(), buffer)
    entries[f"{prefix}/data/weights/{config['config'][first]['path_name']}"] = buffer.getvalue()
    with zipfile.ZipFile(program, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    manifest = json.loads((target / MANIFEST_FILE).read_text())
    manifest["reference"]["sha256"] = sha256_of(program)
    (target / MANIFEST_FILE).write_text(json.dumps(manifest))


def test_a_reference_program_carrying_a_pickle_is_refused_before_it_loads(gated_export, tmp_path):
    marker = tmp_path / "payload-ran"
    planted = tmp_path / "planted"
    _planted(gated_export.target, planted, marker)
    # the payload is live: torch.export.load on its own runs it
    live = subprocess.run([sys.executable, "-c", f"import torch; torch.export.load({str(planted / 'reference.pt2')!r})"],
                          capture_output=True, text=True, timeout=300)
    assert marker.exists(), live.stderr[-1500:]
    marker.unlink()
    result = subprocess.run([sys.executable, "-m", "edgecnn", "validate", str(planted), "--count", "2", "--no-latency"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip().endswith("is pickled; refused before loading it"), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not marker.exists()


@pytest.mark.quick
def test_guard_code_and_foreign_operators_in_a_program_are_refused(tmp_path):
    from edgecnn.schema.program import check_program_archive
    from edgecnn.weights.program import save_reference, trace

    program = tmp_path / "ok.pt2"
    save_reference(trace(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten()).eval(), 8), program)
    check_program_archive(program)
    with zipfile.ZipFile(program) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    graph_name = next(n for n in entries if n.endswith("models/model.json"))
    for change, expected in (
        (lambda g: g.update(guards_code=["__import__('os').system('true')"]), "guard code"),
        (lambda g: g["graph_module"]["graph"]["nodes"][0].update(target="builtins.exec"), "not an aten operator"),
    ):
        graph = json.loads(entries[graph_name])
        change(graph)
        bad = tmp_path / "bad.pt2"
        with zipfile.ZipFile(bad, "w") as archive:
            for name, data in entries.items():
                archive.writestr(name, json.dumps(graph).encode() if name == graph_name else data)
        with pytest.raises(UsageError, match=expected):
            check_program_archive(bad)


def test_the_gate_reads_the_origin_and_the_program(gated_export):
    manifest = open_export(gated_export.target)
    assert manifest.reference is not None and manifest.reference.path == "reference.pt2"
    assert manifest.weights.sha256 is not None and len(manifest.weights.sha256) == 64


def test_inspection_names_the_users_modules_once_the_model_is_named_again(gated_export):
    from edgecnn.harness.inspect_int8 import run_inspection

    with pytest.raises(UsageError, match="name the model again: --model MODULE:ATTR"):
        run_inspection(gated_export.target, count=2)
    with pytest.raises(UsageError, match="does not compute what .* reference program computes"):
        run_inspection(gated_export.target, count=2, model=GatedNet().eval())
    inspection, out = run_inspection(gated_export.target, count=2, model=gated_export.model)
    named = {layer.module for layer in inspection.layers}
    assert {"stem.0", "block.0", "squeeze", "excite", "head.2"} <= named, named
    assert (out / "layers.md").is_file() and (out / "layers.png").is_file()


class Wave(nn.Module):
    def forward(self, x):
        return torch.sin(x)  # no int8 quantizer annotates a sine: it stays float


class WithWave(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.act = Wave()
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc(self.act(self.conv(x)).mean((2, 3)))


def test_what_cannot_be_pure_int8_is_refused_naming_its_module_and_the_float_files_are_written(tmp_path):
    result = edgecnn.export(_trained_like(WithWave()), resolution=16, formats="tflite", out=tmp_path,
                            calib_count=4, validate=False)
    assert [a.path for a in result.manifest.artifacts] == ["model_fp32.tflite"]
    (refusal,) = result.manifest.refused
    assert refusal.path == "model_int8.tflite" and "not pure int8" in refusal.reason
    assert "act (SIN)" in refusal.reason, refusal.reason


def test_the_apps_bundle_an_export_of_your_own_model_and_its_files_carry_their_contract(gated_export, tmp_path):
    """`android-assets FOLDER` takes the folder as it is: the catalog lists the user's TFLite and .pte files with
    their labels and Python's golden results, and each file carries its own contract."""
    from edgecnn.formats import litert
    from edgecnn.schema.catalog import parse_catalog
    from edgecnn.schema.contract import CONTRACT_KEY, parse_contract

    folder = gated_export.target
    result = subprocess.run([sys.executable, "-m", "edgecnn", "android-assets", str(folder), "--assets",
                             str(tmp_path / "assets")], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    catalog = parse_catalog((tmp_path / "assets" / "catalog.json").read_text())
    (variant,) = catalog.variants
    assert variant.variant == "GatedNet_r32" and variant.resolution == 32
    assert [f.file.rsplit("/", 1)[-1] for f in variant.files] == ["model_fp32.tflite", "model_int8.tflite",
                                                                 "model_fp32.pte", "model_int8.pte"]
    labels = (tmp_path / "assets" / variant.labels).read_text().splitlines()
    assert labels == [f"kind {i}" for i in range(6)]
    assert len(catalog.golden.results) == 4
    contract = parse_contract(litert.read_metadata(folder / "model_int8.tflite", CONTRACT_KEY).decode(), "int8")
    assert contract.labels == labels and contract.input.encoding is not None
