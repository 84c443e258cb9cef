"""The Android demo's Java core against Python: JUnit with Debian's JDK, on golden files of real exports.

`edgecnn android-assets` exports two variants (one random-init MobileNetV2, the project's trained
Fashion-MNIST model), writes the app's assets, and the Java core must rebuild every input tensor byte for
byte from the golden PNG and rank Python's raw outputs the same way. The app's benchmark JSON, as the core
writes it, must be readable by `edgecnn app-report`.
"""
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgecnn.schema.catalog import parse_catalog

ROOT = Path(__file__).resolve().parent.parent
CORE = ROOT / "android_demo" / "core" / "src"
JARS = [Path("/usr/share/java") / name for name in ("gson.jar", "junit4.jar", "hamcrest-core.jar")]
EXPORTS = ["mobilenet_v2_a0.35_r224", "mobilenet_v2_a0.5_r32"]  # ids under --export-root, at 224 px as users run it
JUNIT_CLASSES = ["CatalogTest", "PreprocessorTest", "TopKTest", "LatencyStatsTest", "SelfTestTest", "GoldenTest"]


def edgecnn(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "edgecnn", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=900)


@pytest.fixture(scope="module")
def built(app_exports):
    root = app_exports.parent  # the session's exports of both variants (conftest), in root / "export"
    result = edgecnn("android-assets", *EXPORTS, "--assets", str(root / "assets"), "--export-root", str(root / "export"))
    assert result.returncode == 0, result.stderr[-3000:]
    return root


def test_catalog_lists_every_model_file_with_the_manifests_sha256(built):
    catalog = parse_catalog((built / "assets" / "catalog.json").read_text())  # the one schema, typed
    assert catalog.schema == "edgecnn.app-catalog/1"
    keys = [f.key for f in catalog.model_files()]
    assert keys == [f"{v}/model_{p}" for v in EXPORTS
                    for p in ("fp32.tflite", "int8.tflite", "fp32.pte", "int8.pte")]
    for variant in catalog.variants:
        manifest = json.loads((built / "export" / variant.variant / "manifest.json").read_text())
        assert variant.preprocessing.crop_fraction == manifest["preprocessing"]["crop_fraction"]
        for file in variant.files:
            record = next(a for a in manifest["artifacts"] if a["format"] == file.format
                          and a["precision"] == file.precision)
            assert file.runtime == {"tflite": "litert", "executorch": "executorch"}[file.format]
            assert file.file.endswith({"tflite": ".tflite", "executorch": ".pte"}[file.format])
            assert file.input.layout == {"tflite": "NHWC", "executorch": "NCHW"}[file.format]
            data = (built / "assets" / file.file).read_bytes()
            assert hashlib.sha256(data).hexdigest() == record["sha256"] == file.sha256
    assert [v.trained for v in catalog.variants] == [False, True]  # the apps say which classes mean nothing
    fashion_variant = catalog.variants[1]
    fashion = next(f for f in fashion_variant.files if f.key == "mobilenet_v2_a0.5_r32/model_int8.tflite")
    labels = (built / "assets" / fashion_variant.labels).read_text().splitlines()
    assert labels[0] == "T-shirt/top" and len(labels) == 10 and fashion_variant.preprocessing.crop_fraction == 1.0
    assert fashion.input.dtype == "int8" and len(fashion.input.lookup_table) == 3
    # the .pte int8 takes the same codes, as planes: the golden tensors are one transpose apart
    pte = next(f for f in fashion_variant.files if f.key == "mobilenet_v2_a0.5_r32/model_int8.pte")
    assert pte.input.lookup_table == fashion.input.lookup_table and pte.input.shape == [1, 3, 32, 32]
    assert [i.name for i in catalog.golden.images] == ["chelsea.png"]  # the app bundles one golden image
    golden = {g.key: g for g in catalog.golden.results}
    assert len(golden) == len(catalog.golden.results) == len(keys)
    nhwc = np.frombuffer((built / "assets" / golden[fashion.key].input_tensor).read_bytes(), np.int8)
    nchw = np.frombuffer((built / "assets" / golden[pte.key].input_tensor).read_bytes(), np.int8)
    np.testing.assert_array_equal(nhwc.reshape(1, 32, 32, 3).transpose(0, 3, 1, 2).ravel(), nchw)
    # ExecuTorch and LiteRT run the same int8 arithmetic on the golden image: the same top-5
    assert golden[pte.key].top5 == golden[fashion.key].top5


def _compile(out: Path) -> list[str]:
    missing = [str(j) for j in JARS if not j.is_file()]
    assert not missing and shutil.which("javac"), f"make setup installs the JDK, JUnit and Gson; missing {missing}"
    sources = sorted(str(p) for p in CORE.rglob("*.java"))
    classpath = ":".join(str(j) for j in JARS)
    compiled = subprocess.run(["javac", "--release", "11", "-encoding", "UTF-8", "-d", str(out), "-cp", classpath,
                               *sources], capture_output=True, text=True, timeout=300)
    assert compiled.returncode == 0, compiled.stderr
    return [f"{out}:{classpath}"]


@pytest.mark.quick
def test_java_core_unit_tests_pass_without_any_export(tmp_path):
    """The Java core's own JUnit tests (catalog parsing, preprocessing, top-k, statistics, self-test): the golden
    tests against Python's files run below, once assets are built."""
    classpath = _compile(tmp_path / "classes")
    units = [name for name in JUNIT_CLASSES if name != "GoldenTest"]
    result = subprocess.run(["java", "-cp", classpath[0], "org.junit.runner.JUnitCore",
                             *[f"dev.edgecnn.core.{name}" for name in units]],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "OK (" in result.stdout, result.stdout[-4000:] + result.stderr[-2000:]


def test_java_core_passes_its_junit_and_golden_tests(built, tmp_path):
    classpath = _compile(tmp_path / "classes")
    benchmark = tmp_path / "benchmark.json"
    result = subprocess.run(["java", f"-Dedgecnn.assets={built / 'assets'}", f"-Dedgecnn.benchmarkOut={benchmark}",
                             "-cp", classpath[0], "org.junit.runner.JUnitCore",
                             *[f"dev.edgecnn.core.{name}" for name in JUNIT_CLASSES]],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "OK (" in result.stdout, result.stdout[-4000:] + result.stderr[-2000:]

    # the benchmark file as the app writes it is what `edgecnn app-report` reads
    report = edgecnn("app-report", str(benchmark), "--out", str(tmp_path / "report"))
    assert report.returncode == 0, report.stderr
    written = json.loads((tmp_path / "report" / "app_benchmark.json").read_text())
    for entry in written["results"]:
        assert entry["p50Ms"] == pytest.approx(np.percentile(entry["latencyMs"], 50))
        assert entry["p90Ms"] == pytest.approx(np.percentile(entry["latencyMs"], 90))
    assert (tmp_path / "report" / "app_benchmark.png").stat().st_size > 0
    assert "mobilenet_v2_a0.5_r32/model_int8.tflite" in (tmp_path / "report" / "app_benchmark.md").read_text()


def test_golden_input_tensor_breaks_when_python_and_java_disagree(built, tmp_path):
    """The golden test can fail: one changed byte of an expected input tensor makes JUnit report it."""
    assets = tmp_path / "assets"
    shutil.copytree(built / "assets", assets)
    catalog = json.loads((assets / "catalog.json").read_text())
    golden = assets / catalog["golden"]["results"][1]["inputTensor"]
    data = bytearray(golden.read_bytes())
    data[100] = (data[100] + 1) % 256
    golden.write_bytes(bytes(data))
    classpath = _compile(tmp_path / "classes")
    result = subprocess.run(["java", f"-Dedgecnn.assets={assets}", "-cp", classpath[0], "org.junit.runner.JUnitCore",
                             "dev.edgecnn.core.GoldenTest"], capture_output=True, text=True, timeout=300)
    # the failure names the preprocessing and the first differing value's place, not the model file
    assert result.returncode != 0 and (
        "the input differs from Python's (the preprocessing, not the model file): 1 of 150528 values, first at "
        "pixel (row 0, column 33) green: phone " in result.stdout), result.stdout[-3000:]


@pytest.mark.parametrize("variants,message", [
    ("mobilenet_v2:abc:96", "alpha must be a number"),
    ("mobilenet_v2:0.5", "is not model:alpha:resolution[:weights]"),
    ("mobilenet_v2:0.35:96 mobilenet_v2:0.35:96", "a variant is listed twice"),
    ("mobilenet_v2:1.0:32:fashion-mnist-demo", "fashion-mnist-demo is mobilenet_v2 alpha 0.5"),
])
def test_bad_variants_are_one_line_and_write_nothing(tmp_path, variants, message):
    result = edgecnn("android-assets", "--variants", variants, "--assets", str(tmp_path / "assets"),
                     "--export-root", str(tmp_path / "export"))
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert message in result.stderr and "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_app_report_refuses_what_is_not_the_apps_file(tmp_path):
    (tmp_path / "other.json").write_text(json.dumps({"schema": "edgecnn.report/1"}))
    result = edgecnn("app-report", str(tmp_path / "other.json"))
    assert result.returncode == 2 and "is not the app's benchmark file" in result.stderr
