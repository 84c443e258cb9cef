"""The schema layer: typed records all the way to JSON and back, manifests of an earlier edgecnn read through
one migration, and the one place each closeness metric is computed."""

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from edgecnn.schema.details import CoreMLDetails, ExecuTorchDetails, OnnxDetails, TFLiteDetails
from edgecnn.schema.enums import FormatName, Metric, Precision, RepairMode
from edgecnn.schema.int8 import Int8Target
from edgecnn.schema.manifest import MANIFEST_SCHEMA, parse_manifest, to_json
from edgecnn.util import metrics
from edgecnn.util.errors import UsageError

pytestmark = pytest.mark.quick

# written by edgecnn 48426f9 (`edgecnn export --model mobilenet_v2 --weights fashion-mnist-demo
# --int8-target agreement=0.9`, all four formats): the last manifest of schema edgecnn.manifest/2
V2 = Path(__file__).with_name("data") / "manifest_v2_mobilenet_v2_fashion_mnist.json"


def _v2() -> dict:
    return json.loads(V2.read_text())


def test_a_manifest_of_the_previous_schema_is_read_with_one_line_and_typed_details(capsys):
    manifest = parse_manifest(V2.read_text(), V2)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "edgecnn.manifest/2" in err[0] and MANIFEST_SCHEMA in err[0]
    kinds = {(a.format, a.precision): type(a.details) for a in manifest.artifacts}
    assert kinds == {
        (FormatName.ONNX, Precision.FP32): OnnxDetails,
        (FormatName.TFLITE, Precision.FP32): TFLiteDetails,
        (FormatName.TFLITE, Precision.INT8): TFLiteDetails,
        (FormatName.COREML, Precision.FP16): CoreMLDetails,
        (FormatName.COREML, Precision.W8): CoreMLDetails,
        (FormatName.EXECUTORCH, Precision.FP32): ExecuTorchDetails,
        (FormatName.EXECUTORCH, Precision.INT8): ExecuTorchDetails,
    }
    int8 = manifest.artifact("model_int8.tflite").details
    assert isinstance(int8, TFLiteDetails) and int8.repair is not None
    raw = next(a for a in _v2()["artifacts"] if a["path"] == "model_int8.tflite")["details"]["repair"]
    assert int8.repair.mode == RepairMode.AUTO and int8.repair.applied == raw["applied"]
    assert [c.measured.value for c in int8.repair.candidates] == [c["agreement"] for c in raw["candidates"]]
    assert int8.repair.final.measured.metric == Metric.AGREEMENT and int8.repair.final.met is raw["final"]["met"]
    assert int8.xnnpack_partitions == 1 and int8.pure_int8


def test_the_previous_schemas_search_and_fine_tuning_records_migrate_field_by_field(capsys):
    raw = _v2()
    int8 = next(a for a in raw["artifacts"] if a["path"] == "model_int8.tflite")
    # as edgecnn 48426f9 wrote them when the bound was still missed (tflite.py's repair record)
    int8["details"]["repair"]["fine_tuning"] = {
        "tried": True, "images": "2000 images", "epochs": 3, "learning_rate": 1e-5, "loss": "mse",
        "loss_per_epoch": [0.5, 0.4, 0.3], "agreement": 0.9871, "kept": True}
    int8["details"]["repair"]["float_units"] = {
        "units_tried": 52, "most_sensitive": [{"unit": "features.0", "agreement": 0.99, "logits_sqnr_db": 26.1}],
        "greedy_steps": [{"float_units": 1, "logits_sqnr_db": 26.1}],
        "tried": [{"float_units": ["features.0"], "simulated": 0.991, "measured": 0.989}],
        "outcome": "float for features.0 reaches agreement 0.9890 in LiteRT, short of 0.99"}
    raw["refused"] = [{"format": "tflite", "precision": "int8", "path": "model_int8.tflite", "reason": "misses",
                       "kept": "rejected/model_int8.tflite", "details": int8["details"]}]
    manifest = parse_manifest(json.dumps(raw), V2)
    repair = manifest.artifact("model_int8.tflite").details.repair
    assert repair.fine_tuning.kept and repair.fine_tuning.measured.value == 0.9871
    assert repair.kept == ["bias correction (53 layers)", "int8-aware fine-tuning"]
    search = repair.float_units
    assert search.most_sensitive[0].measured.metric == Metric.AGREEMENT and search.tried[0].measured == 0.989
    assert not search.met and search.outcome.startswith("float for features.0")
    assert manifest.refused[0].details.repair.float_units.units_tried == 52
    capsys.readouterr()


def test_a_manifest_goes_to_json_and_back_unchanged(tmp_path, capsys):
    manifest = parse_manifest(V2.read_text(), V2)
    capsys.readouterr()
    text = json.dumps(to_json(manifest))
    again = parse_manifest(text, tmp_path / "manifest.json")
    assert again == manifest and json.loads(text)["schema"] == MANIFEST_SCHEMA
    assert capsys.readouterr().err == ""  # today's schema: no migration note


@pytest.mark.parametrize("path, value, where", [
    (("artifacts", 2, "details", "xnnpack_partitions"), "one", "xnnpack_partitions"),
    (("artifacts", 2, "details", "format"), "onnx", "details"),
    (("artifacts", 2, "details", "repair", "mode"), "sometimes", "mode"),
    (("artifacts", 0, "precision"), "int4", "precision"),
])
def test_the_gate_refuses_details_that_do_not_fit_their_format_in_one_line(tmp_path, capsys, path, value, where):
    manifest = to_json(parse_manifest(V2.read_text(), V2))
    capsys.readouterr()
    broken = copy.deepcopy(manifest)
    node = broken
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(UsageError) as err:
        parse_manifest(json.dumps(broken), tmp_path / "manifest.json")
    assert len(str(err.value).splitlines()) == 1 and where in str(err.value)


def test_an_int8_bound_parses_to_its_metric_and_measures_it():
    target = Int8Target.parse("agreement=0.99")
    assert target.metric == Metric.AGREEMENT and str(target) == "agreement=0.99"
    reference = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    assert target.measure(reference[[0, 1, 2, 2]], reference) == 0.75
    for text in ("agree=0.9", "cosine=", "cosine=1.5", "cosine=x"):
        with pytest.raises(ValueError):
            Int8Target.parse(text)


def test_the_metrics_compute_what_they_name():
    reference = np.array([[3.0, 4.0], [1.0, 0.0]])
    noisy = reference + np.array([[0.3, -0.4], [0.0, 0.1]])
    noise = 0.3**2 + 0.4**2 + 0.1**2
    assert metrics.logits_sqnr_db(noisy, reference) == pytest.approx(10 * np.log10(26.0 / noise))
    assert metrics.logits_sqnr_db(reference, reference) == metrics.EXACT_DB
    assert metrics.cosines(np.array([[1.0, 0.0]]), np.array([[0.0, 2.0]]))[0] == 0.0
    assert metrics.worst_cosine(noisy, reference) == pytest.approx(1 / np.sqrt(1.01))
    assert metrics.top1_agreement(np.array([[1.0, 0.0], [1.0, 0.0]]), reference) == 0.5
    assert metrics.top5_agreement(noisy, reference) == 1.0
