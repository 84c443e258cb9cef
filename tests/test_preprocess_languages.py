"""One preprocessing in three languages: Python, the Android core's Java and the web page's JavaScript (under
Node) compute identical bytes for the same random images (17 to 1,000 px on each side, odd and even, landscape,
portrait and square) at every resolution from 32 to 320."""
import hashlib
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edgecnn.data.preprocess import preprocess

ROOT = Path(__file__).resolve().parent.parent
CORE = ROOT / "android_demo" / "core" / "src"
PAGE_PREPROCESS = ROOT / "edgecnn" / "web" / "page" / "js" / "preprocess.js"
JARS = [Path("/usr/share/java") / name for name in ("gson.jar", "junit4.jar", "hamcrest-core.jar")]
FIRST, LAST = 32, 320


def _images() -> list[tuple[np.ndarray, float]]:
    rng = np.random.default_rng(2026)
    shapes = [(17, 17), (17, 1000), (1000, 17), (1000, 999), (int(rng.integers(18, 500)), int(rng.integers(500, 1000))),
              (int(rng.integers(500, 1000)), int(rng.integers(18, 500))), (257, 256)]  # (height, width)
    images = []
    for i, (height, width) in enumerate(shapes):
        smooth = rng.integers(0, 256, (height // 8 + 2, width // 8 + 2, 3)).repeat(8, 0).repeat(8, 1)[:height, :width]
        noise = rng.integers(-40, 41, (height, width, 3))  # photo-like: smooth areas, edges and noise
        images.append((np.clip(smooth + noise, 0, 255).astype(np.uint8), 1.0 if i % 3 == 2 else 0.875))
    return images


def _write(images, path: Path) -> None:
    with path.open("wb") as out:
        for pixels, crop in images:
            out.write(struct.pack("<iid", pixels.shape[1], pixels.shape[0], crop) + pixels.tobytes())


def _python_hashes(images) -> list[str]:
    return [hashlib.sha256(preprocess(pixels, resolution, crop).tobytes()).hexdigest()
            for pixels, crop in images for resolution in range(FIRST, LAST + 1)]


def _first_difference(hashes: list[str], expected: list[str], images) -> str:
    per_image = LAST - FIRST + 1
    wrong = [i for i, (a, b) in enumerate(zip(hashes, expected)) if a != b]
    if not wrong and len(hashes) == len(expected):
        return ""
    if not wrong:
        return f"{len(hashes)} results for {len(expected)} cases"
    pixels, crop = images[wrong[0] // per_image]
    return (f"{len(wrong)} of {len(expected)} cases differ, the first: a {pixels.shape[1]} x {pixels.shape[0]} image "
            f"(crop {crop}) at {FIRST + wrong[0] % per_image} px")


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    images = _images()
    path = tmp_path_factory.mktemp("preprocess") / "images.bin"
    _write(images, path)
    return images, path, _python_hashes(images)


def test_java_computes_pythons_bytes(cases, tmp_path):
    images, path, expected = cases
    missing = [str(j) for j in JARS if not j.is_file()]
    assert not missing and shutil.which("javac"), f"make setup installs the JDK, JUnit and Gson; missing {missing}"
    classpath = ":".join(str(j) for j in JARS)
    compiled = subprocess.run(["javac", "--release", "11", "-encoding", "UTF-8", "-d", str(tmp_path), "-cp", classpath,
                               *sorted(str(p) for p in CORE.rglob("*.java"))], capture_output=True, text=True,
                              timeout=300)
    assert compiled.returncode == 0, compiled.stderr
    result = subprocess.run(["java", "-cp", f"{tmp_path}:{classpath}", "dev.edgecnn.core.PreprocessorBytes", str(path),
                             str(FIRST), str(LAST)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert not _first_difference(result.stdout.split(), expected, images), _first_difference(
        result.stdout.split(), expected, images)


def test_javascript_computes_pythons_bytes(cases):
    images, path, expected = cases
    assert shutil.which("node"), "make setup installs Node.js"
    result = subprocess.run(["node", str(ROOT / "tests" / "js" / "preprocess_bytes.mjs"), str(PAGE_PREPROCESS),
                             str(path), str(FIRST), str(LAST)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert not _first_difference(result.stdout.split(), expected, images), _first_difference(
        result.stdout.split(), expected, images)
