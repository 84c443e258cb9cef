"""The project's trained models per family (edgecnn/weights/recipes.py, models/): each committed checkpoint
is the one its training record describes, reaches 90% on Fashion-MNIST, and int8 costs it at most half a
point of top-1 on all 10,000 test images (the families re-measured here: those committed)."""
import hashlib
import json
import subprocess
import sys

import pytest

from edgecnn.weights.recipes import RECIPES
from edgecnn.weights.sources import PROJECT_MODELS

INT8_DROP_BOUND = 0.005  # half a point of top-1
COMMITTED = [name for name, recipe in RECIPES.items()
             if name != "fashion-mnist-demo" and (PROJECT_MODELS / recipe.checkpoint).is_file()]


def test_at_least_one_family_model_is_committed():
    assert "fashion-mnist-resnet18" in COMMITTED


@pytest.mark.parametrize("name", COMMITTED)
def test_the_checkpoint_is_the_one_its_record_describes(name):
    recipe = RECIPES[name]
    checkpoint = PROJECT_MODELS / recipe.checkpoint
    record = json.loads(checkpoint.with_name(f"{recipe.stem}.training.json").read_text())
    assert hashlib.sha256(checkpoint.read_bytes()).hexdigest() == record["sha256"]
    assert record["recipe"]["model"] == recipe.model and record["recipe"]["alpha"] == recipe.alpha
    # the zoo's families reached 90%; the geffnet models, 8 epochs of the same recipe at widths they were not
    # designed for, 84.7% and more (docs/trained-models.md)
    assert record["pytorch_test_top1"] >= (0.84 if recipe.third_party else 0.90)
    assert checkpoint.with_name(f"{recipe.stem}.md").is_file()  # its model card
    # small enough to live in git (geffnet mobilenetv3_large_075: 10.6 MiB; VGG-16 at alpha 0.125: 8.04 MiB)
    assert checkpoint.stat().st_size < 11 * 2**20


@pytest.mark.slow  # `make test-full`: repeats coverage `make test` has (kept within its 20 minutes)
# the demo model's test does it in `make test`. The geffnet models miss this bound (int8-zoo: 1.62 and 0.35 pt,
# agreement 93.5% and 97.2%), so they are not held to it here: docs/trained-models.md
@pytest.mark.parametrize("name", ["fashion-mnist-resnet18"])
def test_int8_keeps_top1_on_the_full_test_set(name, tmp_path):
    recipe = RECIPES[name]
    run = [sys.executable, "-m", "edgecnn"]
    export = subprocess.run([*run, "export", "--model", recipe.model, "--weights", name, "--formats", "tflite",
                             "--out", str(tmp_path / "export"), "--no-validate"], capture_output=True, text=True)
    assert export.returncode == 0, export.stderr[-3000:]
    validate = subprocess.run([*run, "validate", str(tmp_path / "export"), "--dataset", "fashion-mnist",
                               "--no-latency", "--out", str(tmp_path / "report")], capture_output=True, text=True)
    assert validate.returncode == 0, validate.stderr[-3000:]
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["labelled"]["images"] == 10_000
    int8 = next(a for a in report["artifacts"] if a["path"] == "model_int8.tflite")
    assert int8["accuracy"]["top1_drop"] <= INT8_DROP_BOUND
    assert int8["accuracy"]["top1_agreement"] >= 0.99  # the same answer as PyTorch fp32, right or wrong
