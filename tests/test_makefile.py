"""Set-up in proportion: each make target installs what it uses. `make -n -B` prints every recipe a target
would run with nothing installed yet, without running any."""
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.quick

JDK, BROWSER, NPM, ADB, FASHION = "default-jdk-headless", "chromium", "npm ci", "for p in adb;", "dataset-fashion-mnist"


def dry_run(*target: str) -> str:
    assert shutil.which("make"), "make is needed to run the Makefile"
    result = subprocess.run(["make", "-n", "-B", *target], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_a_first_export_installs_only_the_python_environment():
    recipe = dry_run("export", "MODEL=mobilenet_v2", "ALPHA=0.75")
    assert "pip install" in recipe and "edgecnn export --model mobilenet_v2 --alpha 0.75" in recipe
    for unused in (JDK, BROWSER, NPM, ADB, FASHION):
        assert unused not in recipe, unused


def test_the_fashion_mnist_files_come_with_the_weights_that_need_them():
    assert FASHION in dry_run("export", "WEIGHTS=fashion-mnist-demo")
    assert FASHION not in dry_run("export", "WEIGHTS=lite0-imagenet", "MODEL=efficientnet_lite0")


@pytest.mark.parametrize("target, needed, unused", [
    ("android-test", (JDK, FASHION), (BROWSER, NPM, ADB)),
    ("web-demo", (BROWSER, NPM, FASHION), (JDK, ADB)),
    ("bench-device", (ADB,), (JDK, BROWSER, NPM, FASHION)),
    ("train-demo", (FASHION,), (JDK, BROWSER, NPM, ADB)),
    ("test", (JDK, BROWSER, NPM, ADB, FASHION), ()),
])
def test_each_target_installs_what_it_uses(target, needed, unused):
    recipe = dry_run(target, "VARIANT=v")
    for package in needed:
        assert package in recipe, (target, package)
    for package in unused:
        assert package not in recipe, (target, package)
