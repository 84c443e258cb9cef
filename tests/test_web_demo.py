"""The phone web demo in a real browser: Debian's Chromium, headless, driven by puppeteer-core.

`edgecnn web-demo` exports two variants (a random-init MobileNetV2 with ImageNet's 1000 classes and the
project's trained Fashion-MNIST model) and builds the site; the page's own self-test then runs every model
file (fp32 ONNX in onnxruntime-web, fp32 and int8 TFLite in LiteRT.js) on two golden images of different
aspect ratios and must reproduce Python's input tensor exactly and Python's top-5, with outputs within
1e-4 relative (fp32) or one quantization step (int8).
"""
import dataclasses
import json
import shutil
import ssl
import struct
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from edgecnn.schema.catalog import parse_catalog
from edgecnn.web.browser import run_selftest
from edgecnn.web.serve import serving

ROOT = Path(__file__).resolve().parent.parent
EXPORTS = ["mobilenet_v2_a0.35_r224", "mobilenet_v2_a0.5_r32"]  # at 224 px, as the README runs it
SCREENSHOT = ROOT / "build" / "test-output" / "web_demo_phone.png"  # look at it: the page on a phone


def edgecnn(*args):
    return subprocess.run([sys.executable, "-m", "edgecnn", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=900)


@pytest.fixture(scope="module")
def site(app_exports):
    root = app_exports.parent  # the session's exports of both variants (conftest), in root / "export"
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    folders = [str(root / "export" / name) for name in EXPORTS]  # export folders, as paths
    result = edgecnn("web-demo", *folders, "--out", str(root / "site"), "--export-root", str(root / "export"),
                     "--selftest", "--screenshot", str(SCREENSHOT))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    return root / "site"


def test_every_model_file_passes_the_pages_selftest_in_chromium(site):
    outcome = run_selftest(site, runs=5)
    result = outcome["result"]
    assert outcome["browser"].startswith("Chrome/")
    assert result["crossOriginIsolated"] is True  # WASM threads are possible
    catalog = json.loads((site / "catalog.json").read_text())
    keys = [f["key"] for v in catalog["variants"] for f in v["files"]]
    assert [f["key"] for f in result["files"]] == keys and len(keys) == 6
    assert {f["runtime"] for f in result["files"]} == {"onnxruntime-web", "litert.js"}
    for file in result["files"]:
        assert "error" not in file, file
        assert len(file["images"]) == 2
        for image in file["images"]:
            assert image["inputValuesDiffering"] == 0, (file["key"], image)  # JS preprocessing = Python's
            assert image["verdict"] == "input bytes and outputs agree with Python"
            assert image["top5"] == image["pythonTop5"], (file["key"], image)
            if file["precision"] == "int8":
                assert image["maxStepDifference"] <= 1, (file["key"], image)
            else:
                assert image["maxRelativeDifference"] <= 1e-4, (file["key"], image)
        assert file["passed"] and file["medianMs"] > 0 and file["loadMs"] > 0
        # the random-weight variant says so on the page; the trained one shows its classes plainly
        random = file["key"].startswith("mobilenet_v2_a0.35_r224/")
        assert file["weightsNote"] == ("random weights, not a trained classifier: its classes mean nothing"
                                       if random else "")
    assert result["passed"]
    int8 = [f for v in catalog["variants"] for f in v["files"] if f["precision"] == "int8"]
    assert int8 and all(f["input"]["dtype"] == "int8" and f["output"]["dtype"] == "int8" for f in int8)


def test_camera_frames_are_classified_continuously(site):
    """Chromium's synthetic camera stands in for a phone's back camera: tapping Camera shows the live view
    and classifies frame after frame; tapping again stops it."""
    camera = run_selftest(site, runs=1, camera=True)["camera"]
    assert camera["videoShown"] and camera["button"] == "Stop camera"
    assert camera["frameSize"][0] > 0 and camera["frameSize"][1] > 0
    assert len(camera["top5"]) == 5 and "last 50 runs" in camera["stats"] and "last 50 runs" not in camera["statsBefore"]
    assert camera["videoShownAfterStop"] is False


def test_screenshot_at_a_phones_viewport(site):
    header = SCREENSHOT.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", header[16:24]) == (390 * 3, 844 * 3)


def test_selftest_fails_when_the_page_and_python_disagree(site, tmp_path):
    """The check can fail: one byte of one golden input tensor changed, and the page reports that file's
    preprocessing as differing and the self-test as failed; one output changed, and its comparison fails."""
    broken = tmp_path / "site"
    shutil.copytree(site, broken)
    catalog = json.loads((broken / "catalog.json").read_text())
    first, last = catalog["golden"]["results"][0], catalog["golden"]["results"][-1]
    tensor = bytearray((broken / first["inputTensor"]).read_bytes())
    tensor[7] ^= 0x01
    (broken / first["inputTensor"]).write_bytes(bytes(tensor))
    output = np.frombuffer((broken / last["outputTensor"]).read_bytes(), dtype=np.int8).copy()
    output[last["top5"][0]] -= 3  # three quantization steps off on the top class
    (broken / last["outputTensor"]).write_bytes(output.tobytes())
    result = run_selftest(broken, runs=1)["result"]
    assert not result["passed"]
    by_key = {f["key"]: f for f in result["files"]}
    first_image = next(i for i in by_key[first["key"]]["images"] if i["image"] == first["image"])
    assert first_image["inputValuesDiffering"] == 1 and not first_image["passed"]
    # the failure names the preprocessing and where, not the model file
    assert first_image["verdict"].startswith("the input differs from Python's (the preprocessing, not the model "
                                             "file): 1 of ")
    assert "values, first at pixel (row 0, column " in first_image["verdict"]
    assert by_key[first["key"]]["error"] == f"{first['image']}: {first_image['verdict']}"
    last_image = next(i for i in by_key[last["key"]]["images"] if i["image"] == last["image"])
    assert last_image["maxStepDifference"] == 3 and not last_image["passed"]
    assert last_image["verdict"] == "given the same input bytes, the model's outputs differ from Python's beyond tolerance"
    untouched = [f for k, f in by_key.items() if k not in (first["key"], last["key"])]
    assert untouched and all(f["passed"] for f in untouched)


def test_server_sends_isolation_headers_over_https(site, tmp_path, monkeypatch):
    monkeypatch.setattr("edgecnn.web.serve.CERTIFICATE_FOLDER", tmp_path / "tls")
    with serving(site, https=True) as url:
        context = ssl.create_default_context(cafile=str(tmp_path / "tls" / "cert.pem"))
        context.check_hostname = False  # the certificate names this machine's addresses; the URL says 127.0.0.1
        with urllib.request.urlopen(url + "catalog.json", context=context) as response:
            assert response.headers["Cross-Origin-Opener-Policy"] == "same-origin"
            assert response.headers["Cross-Origin-Embedder-Policy"] == "require-corp"
            assert json.loads(response.read())["schema"] == "edgecnn.app-catalog/1"
        with urllib.request.urlopen(url + "vendor/onnxruntime-web/ort-wasm-simd-threaded.wasm", context=context) as response:
            assert response.headers["Content-Type"] == "application/wasm"


# ---- one catalog schema for both apps ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def android_assets(site):
    """The Android app's assets from the same export folders as the site."""
    root = site.parent
    result = edgecnn("android-assets", *EXPORTS, "--assets", str(root / "assets"), "--export-root", str(root / "export"))
    assert result.returncode == 0, result.stderr[-3000:]
    return root / "assets"


def test_android_and_web_catalogs_are_one_schema_and_agree(site, android_assets):
    web = parse_catalog((site / "catalog.json").read_text())  # both through the one TypeAdapter
    android = parse_catalog((android_assets / "catalog.json").read_text())
    assert web.schema == android.schema == "edgecnn.app-catalog/1"
    assert [v.variant for v in web.variants] == [v.variant for v in android.variants] == [
        *EXPORTS]
    for ours, theirs in zip(web.variants, android.variants):
        shared = ("variant", "model", "alpha", "resolution", "num_classes", "labels", "weights", "preprocessing")
        assert [getattr(ours, name) for name in shared] == [getattr(theirs, name) for name in shared]
        assert {f.format for f in ours.files} == {"onnx", "tflite"}
        assert {f.format for f in theirs.files} == {"tflite", "executorch"}
    web_files = {f.key: f for f in web.model_files()}
    android_files = {f.key: f for f in android.model_files()}
    tflite = [key for key in web_files if key in android_files]
    assert tflite and all(key.endswith(".tflite") for key in tflite)
    for key in tflite:  # the same file, described alike; only the runtime each app runs it with differs
        ours, theirs = web_files[key], android_files[key]
        assert (ours.runtime, theirs.runtime) == ("litert.js", "litert")
        assert ours == dataclasses.replace(theirs, runtime="litert.js")
        assert (site / ours.file).read_bytes() == (android_assets / theirs.file).read_bytes()
    # the shared golden image gives the same golden tensors and top-5 in both
    web_golden = {(g.key, g.image): g for g in web.golden.results}
    for result in android.golden.results:
        if result.key in tflite:
            same = web_golden[(result.key, result.image)]
            assert (same.top5, same.top5_scores) == (result.top5, result.top5_scores)
            for ours, theirs in ((same.input_tensor, result.input_tensor), (same.output_tensor, result.output_tensor)):
                assert (site / ours).read_bytes() == (android_assets / theirs).read_bytes()


def test_java_core_passes_its_golden_test_on_the_web_sites_catalog(site, tmp_path):
    """The Android core reads the site's catalog: it leaves out the .onnx files and reproduces Python's input
    tensors of the .tflite files byte for byte on both golden images."""
    jars = [Path("/usr/share/java") / name for name in ("gson.jar", "junit4.jar", "hamcrest-core.jar")]
    assert all(j.is_file() for j in jars) and shutil.which("javac"), "make setup installs the JDK, JUnit and Gson"
    sources = sorted(str(p) for p in (ROOT / "android_demo" / "core" / "src").rglob("*.java"))
    classpath = ":".join([str(tmp_path), *map(str, jars)])
    compiled = subprocess.run(["javac", "--release", "11", "-encoding", "UTF-8", "-d", str(tmp_path), "-cp", classpath,
                               *sources], capture_output=True, text=True, timeout=300)
    assert compiled.returncode == 0, compiled.stderr
    result = subprocess.run(["java", f"-Dedgecnn.assets={site}", "-cp", classpath, "org.junit.runner.JUnitCore",
                             "dev.edgecnn.core.GoldenTest"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "OK (" in result.stdout, result.stdout[-4000:] + result.stderr[-2000:]


def test_page_passes_its_selftest_on_the_android_apps_catalog(site, android_assets, tmp_path):
    """The page reads the app's catalog: it leaves out the .pte files and runs the .tflite files in LiteRT.js."""
    mixed = tmp_path / "site"
    shutil.copytree(site, mixed, ignore=shutil.ignore_patterns("catalog.json", "models", "golden"))
    for name in ("catalog.json", "models", "golden"):
        (shutil.copytree if (android_assets / name).is_dir() else shutil.copyfile)(android_assets / name, mixed / name)
    result = run_selftest(mixed, runs=1)["result"]
    android = parse_catalog((android_assets / "catalog.json").read_text())
    assert [f["key"] for f in result["files"]] == [f.key for f in android.model_files() if f.format == "tflite"]
    assert {f["runtime"] for f in result["files"]} == {"litert"}
    assert result["passed"] and all(len(f["images"]) == 1 and f["passed"] for f in result["files"]), result


@pytest.mark.parametrize("args, message", [
    (["web-demo", "--variants", "mobilenet_v2:big:64"], "alpha must be a number"),
    (["web-demo", "--variants", ""], "no exports given: name export folders (or ids under --export-root), or --variants"),
    (["web-demo"], "no exports given"),
    (["web-demo", "tests"], "tests: no export there (a folder holding manifest.json, or an export id under export)"),
    (["web-demo", "nowhere_r224", "--export-root", "tests"], "nowhere_r224: no export there"),
    (["web-serve", "--site", "tests"], "is not a built demo site"),
    (["web-demo", "--variants", "mobilenet_v2:0.35:64", "--screenshot", "x.png"], "add --selftest"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, args, message):
    out = tmp_path / "site"
    result = edgecnn(*args, *(["--out", str(out)] if args[0] == "web-demo" else []))
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()
