"""The built wheel works anywhere: installed into a fresh virtual environment outside the checkout, run from
another folder.

The wheel is built once per module from a copy of the checkout (nothing is written into the checkout), installed
with `--no-deps --no-index` into a new venv in pytest's tmp folder, and given the project environment's
dependencies through a `.pth` line naming its site-packages: no network, no torch download. A `.pth` line only
appends a folder to sys.path and does not run the `.pth` files inside it, so the editable install of the project
environment stays inert and the wheel's copy of edgecnn is the one imported (a test checks it). Each command then
runs with the new venv's `edgecnn` in a folder that is not the checkout: anything that only works from a clone
(package data left out of the wheel, a path computed outside the package) fails here.
"""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parent.parent
NPM_FOLDER = ROOT / "web_demo"  # the checkout's npm project; its node_modules are installed by `make setup`
VARIANT = "mobilenet_v2_a0.5_r32"  # what `--weights fashion-mnist-demo` was trained as
WEB_VARIANTS = "mobilenet_v2:0.5:32:fashion-mnist-demo"
NPM_PACKAGES = ("onnxruntime-web", "@litertjs/core", "puppeteer-core")


def _run(args, *, cwd, env=None, timeout):
    return subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _ok(result):
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result


def _copy_source(target: Path) -> Path:
    """The checkout's top-level files (pyproject.toml, README.md, ...) and edgecnn/, without caches."""
    target.mkdir()
    for entry in ROOT.iterdir():
        if entry.is_file():
            shutil.copy2(entry, target / entry.name)
    shutil.copytree(ROOT / "edgecnn", target / "edgecnn", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return target


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The wheel, a fresh venv outside the checkout with it installed, the env to run it with, and a folder to
    run it in (not the checkout)."""
    base = tmp_path_factory.mktemp("wheel")
    source = _copy_source(base / "source")
    dist = base / "dist"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    _ok(_run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", dist, source], cwd=base,
             timeout=300))
    (wheel,) = dist.glob("edgecnn-*.whl")

    venv = base / "venv"
    _ok(_run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=base, timeout=120))
    python = venv / "bin" / "python"
    # the project environment's pip installs into the new venv; before the .pth below, so that pip does not take
    # the project environment's edgecnn for this one
    _ok(_run([*pip, "--python", python, "install", "--no-deps", "--no-index", "-q", wheel], cwd=base, timeout=300))
    purelib = _ok(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=base,
                       timeout=60))
    site_packages = Path(purelib.stdout.strip())
    (site_packages / "_project_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env.update(
        VIRTUAL_ENV=str(venv),
        PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        PYTHONNOUSERSITE="1",
        PYTHONWARNINGS="ignore",  # third-party deprecation notes are not the command's output
        TF_CPP_MIN_LOG_LEVEL="3",
        MPLBACKEND="Agg",
        NO_COLOR="1",
        TERM="dumb",
        COLUMNS="120",
        PIP_NO_INDEX="1",
    )
    elsewhere = tmp_path_factory.mktemp("elsewhere")  # the user's folder: no checkout, no export/, no web_demo/
    return SimpleNamespace(wheel=wheel, venv=venv, python=python, edgecnn=venv / "bin" / "edgecnn", env=env,
                           cwd=elsewhere)


def edgecnn(installed, *args, timeout=300):
    return _run([installed.edgecnn, *args], cwd=installed.cwd, env=installed.env, timeout=timeout)


@pytest.fixture(scope="module")
def demo_export(installed):
    """The trained Fashion-MNIST demo model exported by the installed wheel (ONNX and TFLite; int8 repair off to
    keep it short: it is not what this module tests)."""
    out = installed.cwd / "export" / VARIANT
    command = "export --model mobilenet_v2 --weights fashion-mnist-demo --formats onnx,tflite --int8-repair none"
    result = edgecnn(installed, *command.split(), "--out", out, "--no-validate", timeout=900)
    return SimpleNamespace(result=result, out=out)


def test_wheel_ships_every_data_file_the_package_tracks(installed):
    tracked = _run(["git", "-C", ROOT, "ls-files", "-z", "--", "edgecnn"], cwd=ROOT, timeout=60)
    if tracked.returncode != 0:
        pytest.skip("not a git checkout: the tracked data files are unknown")
    data = {name for name in tracked.stdout.split("\0") if name and not name.endswith(".py") and (ROOT / name).exists()}
    assert {"edgecnn/zoo/figures.json", "edgecnn/web/page/index.html"} <= data
    with zipfile.ZipFile(installed.wheel) as wheel:
        missing = sorted(data - set(wheel.namelist()))
    assert not missing, f"tracked under edgecnn/ but not in the wheel (pyproject package-data): {missing}"


def test_installed_edgecnn_is_the_wheels_copy_not_the_checkouts(installed):
    result = _ok(_run([installed.python, "-c", "import edgecnn; print(edgecnn.__file__)"], cwd=installed.cwd,
                      env=installed.env, timeout=120))
    imported = Path(result.stdout.strip()).resolve()
    assert imported.is_relative_to(installed.venv.resolve()), imported
    assert not imported.is_relative_to(ROOT), imported


def test_edgecnn_list_runs_from_another_folder(installed):
    result = _ok(edgecnn(installed, "list", timeout=120))
    names = {line.split()[0] for line in result.stdout.splitlines() if line.strip()}
    assert {"resnet18", "mobilenet_v2", "efficientnet_b0"} <= names
    assert "Traceback" not in result.stderr


def test_export_with_the_trained_demo_weights_reads_them_from_the_installed_package(installed, demo_export):
    _ok(demo_export.result)
    manifest = json.loads((demo_export.out / "manifest.json").read_text())
    assert manifest["variant"] == VARIANT
    assert manifest["weights"]["name"] == "fashion-mnist-demo" and manifest["weights"]["trained"] is True
    checkpoint = Path(manifest["weights"]["path"]).resolve()
    assert checkpoint.is_relative_to(installed.venv.resolve()), checkpoint  # the wheel's checkpoint
    artifacts = {(a["format"], a["precision"]) for a in manifest["artifacts"]}
    assert {("onnx", "fp32"), ("tflite", "fp32"), ("tflite", "int8")} <= artifacts
    assert all((demo_export.out / a["path"]).is_file() for a in manifest["artifacts"])


def test_validate_on_fashion_mnist_runs_from_another_folder(installed, demo_export):
    _ok(demo_export.result)
    out = installed.cwd / "validation"
    result = _ok(edgecnn(installed, "validate", demo_export.out, *"--dataset fashion-mnist --dataset-count 200".split(),
                         "--no-latency", "--out", out))
    assert "Traceback" not in result.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["passed"] is True
    assert report["labelled"]["images"] == 200
    assert report["labelled"]["pytorch_fp32"]["top1"] > 0.8  # the trained model, not random init
    assert all(a["accuracy"] for a in report["artifacts"])


def test_web_demo_without_npm_packages_says_so_in_one_line(installed, tmp_path):
    # an export root with nothing in it: the missing runtimes must be found before any export starts
    result = edgecnn(installed, "web-demo", "--variants", WEB_VARIANTS, "--export-root", tmp_path / "export", "--out",
                     tmp_path / "site", timeout=120)
    assert result.returncode == 2, result.stderr[-3000:]
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("edgecnn: error: ")
    assert all(package in lines[0] for package in NPM_PACKAGES), lines[0]
    assert "npm ci" in lines[0] and "--npm-folder" in lines[0]
    assert not (tmp_path / "export").exists() and not (tmp_path / "site").exists()


def test_web_demo_builds_the_site_from_an_existing_export_with_the_checkouts_npm_folder(installed, demo_export):
    _ok(demo_export.result)
    site = installed.cwd / "site"
    result = _ok(edgecnn(installed, "web-demo", "--variants", WEB_VARIANTS, "--export-root", demo_export.out.parent,
                         "--out", site, "--npm-folder", NPM_FOLDER))
    assert "not exported yet" not in result.stderr  # the export above was used, not made again
    catalog = json.loads((site / "catalog.json").read_text())
    assert [v["variant"] for v in catalog["variants"]] == [VARIANT]
    files = catalog["variants"][0]["files"]
    assert {f["format"] for f in files} == {"onnx", "tflite"}
    assert all((site / f["file"]).is_file() for f in files)
    for page_file in ("index.html", "style.css", "js/app.js"):  # the page source, package data
        assert (site / page_file).is_file(), page_file
