"""A model no one here wrote: geffnet's MobileNetV3-Large (TorchScript/autograd hard-swish, hard-sigmoid
squeeze-excite, `x.mean` heads) through `edgecnn export --model geffnet:create_model`, as a user types it.

The other four geffnet models of the issue, and all four formats at 128 px, are `make bench-thirdparty`."""

import json
import subprocess
import sys

import geffnet  # noqa: F401  (make setup installs geffnet==1.0.2 with --no-deps: a missing one fails here)
import pytest

from edgecnn.schema.details import ExecuTorchDetails, TFLiteDetails
from edgecnn.schema.manifest import open_export

ARGS = json.dumps({"model_name": "mobilenetv3_large_100", "num_classes": 10})


@pytest.fixture(scope="module")
def mobilenetv3(tmp_path_factory):
    folder = tmp_path_factory.mktemp("geffnet") / "mnv3"
    result = subprocess.run(
        [sys.executable, "-m", "edgecnn", "export", "--model", "geffnet:create_model", "--model-args", ARGS,
         "--num-classes", "10", "--resolution", "64", "--formats", "onnx,tflite,executorch", "--calib-count", "16",
         "--no-validate", "--out", str(folder)],
        capture_output=True, text=True, timeout=1500,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return folder, result


def test_it_exports_pure_int8_in_few_pieces_and_a_fully_delegated_int8_pte(mobilenetv3):
    folder, result = mobilenetv3
    assert "Traceback" not in result.stderr
    manifest = open_export(folder)
    assert manifest.variant == "mobilenetv3_large_100_r64" and manifest.num_classes == 10
    assert manifest.origin.built_by == "geffnet:create_model" and manifest.origin.arguments["num_classes"] == 10
    records = {a.path: a for a in manifest.artifacts}
    assert manifest.refused == [], manifest.refused
    tflite = records["model_int8.tflite"].details
    assert isinstance(tflite, TFLiteDetails) and tflite.xnnpack_partitions <= 2, tflite.operators
    assert "HARD_SWISH" not in tflite.operators and "LOGISTIC" not in tflite.operators
    pte = records["model_int8.pte"].details
    assert isinstance(pte, ExecuTorchDetails) and pte.xnnpack_partitions >= 1  # compute outside XNNPACK is refused
    for path in ("model.onnx", "model_fp32.tflite", "model_fp32.pte"):
        assert manifest.parity[path].status.value == "passed"


def test_inspection_names_layers_by_geffnets_module_paths(mobilenetv3, tmp_path):
    folder, _ = mobilenetv3
    result = subprocess.run(
        [sys.executable, "-m", "edgecnn", "inspect-int8", str(folder), "--count", "2",
         "--model", "geffnet:create_model", "--model-args", ARGS],
        capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    layers = json.loads((folder / "inspect-int8" / "layers.json").read_text())["layers"]
    named = {layer["module"] for layer in layers}
    assert {"conv_stem", "blocks.1.0.conv_dw", "blocks.6.0.conv", "conv_head", "classifier"} & named, sorted(named)[:20]
    assert {"blocks.2.0.se.conv_reduce", "act1", "blocks.3.0.act1"} <= named, sorted(named)  # SE, hard-swish
