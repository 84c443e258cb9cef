"""The project's own trained model (edgecnn/weights/checkpoints/, `make train-demo`) through every format, on all 10,000
Fashion-MNIST test images: the accuracy int8 costs, measured, bounded, and as the model card records it."""
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from edgecnn.weights.sources import PROJECT, PROJECT_MODELS

CHECKPOINT = PROJECT_MODELS / PROJECT["fashion-mnist-demo"][1]
RECORD = CHECKPOINT.with_name(CHECKPOINT.name.replace(".pth", ".training.json"))
CARD = CHECKPOINT.with_name(CHECKPOINT.name.replace(".pth", ".md"))
INT8_DROP_BOUND = 0.010  # at most 1.0 point of top-1
FLOAT_DROP_BOUND = 0.001  # fp32 files: at most 0.1 point (a few of 10,000 images near a tie)


def edgecnn(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "edgecnn", *args], capture_output=True, text=True, timeout=1200,
                          cwd=cwd)


@pytest.fixture(scope="module")
def report(app_exports):
    # `edgecnn export --model mobilenet_v2 --weights fashion-mnist-demo --no-validate`, run once for the
    # session (conftest)
    root = app_exports.parent
    validate = edgecnn("validate", str(app_exports / "mobilenet_v2_a0.5_r32"), "--dataset", "fashion-mnist",
                       "--no-latency", "--out", str(root / "report"))
    assert validate.returncode == 0, validate.stderr[-3000:]
    return json.loads((root / "report" / "report.json").read_text())


def test_the_committed_checkpoint_is_the_one_its_record_describes():
    record = json.loads(RECORD.read_text())
    assert hashlib.sha256(CHECKPOINT.read_bytes()).hexdigest() == record["sha256"]
    assert record["recipe"]["alpha"] == 0.5 and record["recipe"]["resolution"] == 32
    assert CHECKPOINT.stat().st_size < 4 * 2**20  # small enough to live in git


def test_every_format_on_the_full_test_set(report):
    labelled = report["labelled"]
    assert labelled["images"] == 10_000 and len(labelled["classes"]) == 10
    assert labelled["pytorch_fp32"]["top1"] >= 0.90
    by_path = {a["path"]: a for a in report["artifacts"]}
    assert set(by_path) == {"model.onnx", "model_fp32.tflite", "model_int8.tflite", "model.mlpackage",
                            "model_w8.mlpackage", "model_fp32.pte", "model_int8.pte"}
    for path in ("model.onnx", "model_fp32.tflite", "model_fp32.pte"):
        assert by_path[path]["accuracy"]["top1_drop"] <= FLOAT_DROP_BOUND, path
    for path in ("model_int8.tflite", "model_int8.pte"):
        assert by_path[path]["accuracy"]["top1_drop"] <= INT8_DROP_BOUND, path
    assert by_path["model.mlpackage"]["accuracy"]["top1_drop"] <= FLOAT_DROP_BOUND * 5  # fp16
    assert all(a["status"] == "passed" for a in report["artifacts"])  # parity gated: trained weights


def test_the_model_card_records_what_is_measured(report):
    card = CARD.read_text()
    recorded = {m.group(1): float(m.group(2)) for m in
                re.finditer(r"^\| (\S+) \| \w+ \| ([\d.]+)% \|", card, flags=re.MULTILINE)}
    reference = re.search(r"^\| PyTorch fp32 \(reference\) \| - \| ([\d.]+)% \|", card, flags=re.MULTILINE)
    assert reference and abs(float(reference.group(1)) - 100 * report["labelled"]["pytorch_fp32"]["top1"]) <= 0.05
    for artifact in report["artifacts"]:
        # the same files on the same data: another CPU may flip an image or two at a near tie
        assert abs(recorded[artifact["path"]] - 100 * artifact["accuracy"]["top1"]) <= 0.05, artifact["path"]
    assert json.loads(RECORD.read_text())["sha256"] in card


def test_dataset_accuracy_needs_a_model_trained_on_that_dataset(tmp_path):
    export = edgecnn("export", "--model", "mobilenet_v2", "--alpha", "0.35", "--resolution", "96", "--formats",
                     "onnx", "--out", str(tmp_path / "imagenet"), "--no-validate")
    assert export.returncode == 0, export.stderr[-2000:]
    result = edgecnn("validate", str(tmp_path / "imagenet"), "--dataset", "fashion-mnist", "--no-latency")
    assert result.returncode == 2 and "it was not trained on fashion-mnist" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    result = edgecnn("validate", str(tmp_path / "imagenet"), "--dataset", "mnist")
    assert result.returncode == 2 and "invalid choice: 'mnist'" in result.stderr
