"""Status logic and report rendering, from records made by hand: fast, no export needed."""
import json
import re

import pytest

from edgecnn.schema.manifest import WeightsRecord, to_json
from edgecnn.schema.latency import Latency, LatencyReport, LoadAndMemory, Machine
from edgecnn.harness.parity import CheckStatus, Limits, Parity, is_gated, limits, status_of, violations
from edgecnn.schema.report import Accuracy, ArtifactCheck, ImagesUsed, LabelledSummary, ValidationReport
from edgecnn.harness.report import console_table, latency_table, markdown, plot, plot_latency
from edgecnn.util.tables import format_table

pytestmark = pytest.mark.quick  # needs no converter: `make test-quick`

GOOD = Parity(8, 1e-6, 1e-6, 1.0, 1.0, 1.0, 1.0)
NOISY = Parity(8, 0.4, 0.2, 0.9, 0.6, 0.5, 0.25)


@pytest.mark.parametrize("precision, trained, parity, expected", [
    ("fp32", False, GOOD, CheckStatus.PASSED),
    ("fp32", False, NOISY, CheckStatus.FAILED),  # fp32 is gated even for random weights
    ("fp16", False, NOISY, CheckStatus.FAILED),
    ("int8", False, NOISY, CheckStatus.REPORTED),  # untrained: quantization noise is measured, not gated
    ("w8", False, NOISY, CheckStatus.REPORTED),
    ("int8", True, NOISY, CheckStatus.FAILED),  # trained: gated
    ("int8", True, GOOD, CheckStatus.PASSED),
])
def test_status_follows_precision_training_and_limits(precision, trained, parity, expected):
    assert status_of(precision, trained, violations(parity, precision, trained)) is expected
    assert is_gated(precision, trained) == (expected is not CheckStatus.REPORTED)


def test_display_text_is_made_from_the_status():
    assert CheckStatus.REPORTED.display() == "reported (not gated: weights not known to be trained)"
    assert CheckStatus.NOT_RUN.display("no runtime") == "not run: no runtime"
    assert CheckStatus.PASSED.display() == "passed" and CheckStatus.FAILED.value == "failed"
    assert [s for s in CheckStatus if s.counts_against] == [CheckStatus.FAILED]


def _report(statuses):
    checks = []
    for i, status in enumerate(statuses):
        parity = None if status is CheckStatus.NOT_RUN else (GOOD if status is CheckStatus.PASSED else NOISY)
        problems = ["worst cosine 0.60000 < 0.9999"] if status is CheckStatus.FAILED else []
        checks.append(ArtifactCheck(f"model_{i}.bin", "onnx", "fp32" if status is not CheckStatus.REPORTED else "int8",
                                    status, parity, limits("fp32") if parity else None, problems,
                                    reason="Core ML predicts only on macOS" if parity is None else "",
                                    accuracy=Accuracy(0.9, 0.99, 0.01, 0.0) if parity else None))
    return ValidationReport(
        variant="v_a1.0_r32", export="export/v", manifest_sha256="0" * 64,
        weights=WeightsRecord("random initialisation (seed 0), UNTRAINED", False),
        parity_images=ImagesUsed(8, "1" * 64, "photos"), pytorch_fp32_vs_float64=GOOD, fp32_limit_note="note",
        labelled=LabelledSummary("labelled/", 100, {"a": 0, "b": 1}, Accuracy(0.91, 1.0)), artifacts=checks,
        created_with={"edgecnn": "0.1.0"})


def test_a_report_passes_unless_an_artifact_failed():
    assert _report([CheckStatus.PASSED, CheckStatus.REPORTED, CheckStatus.NOT_RUN]).passed
    failing = _report([CheckStatus.PASSED, CheckStatus.FAILED])
    assert not failing.passed and [a.path for a in failing.failures()] == ["model_1.bin"]
    assert failing.failures()[0].failure_line() == "model_1.bin (fp32): worst cosine 0.60000 < 0.9999"


def test_report_json_stores_status_values_and_renderings_show_display_text(tmp_path):
    report = _report([CheckStatus.PASSED, CheckStatus.FAILED, CheckStatus.REPORTED, CheckStatus.NOT_RUN])
    data = json.loads(json.dumps(report.to_json()))
    assert [a["status"] for a in data["artifacts"]] == ["passed", "failed", "reported", "not run"]
    assert data["passed"] is False and data["labelled"]["pytorch_fp32"]["top1"] == 0.91
    table = console_table(report)
    assert "reported (not gated: weights not known to be trained)" in table
    assert "not run: Core ML predicts only on macOS" in table and "(PyTorch fp32)" in table
    text = markdown(report)
    assert "Overall: **FAILED**" in text and "failed: worst cosine 0.60000 < 0.9999" in text
    assert "## Accuracy on 100 labelled images (2 classes, labelled/)" in text and "| model_0.bin | 90.00% |" in text
    plot(report, tmp_path / "report.png")
    assert (tmp_path / "report.png").read_bytes()[:4] == b"\x89PNG"


def test_latency_table_and_plot_from_records(tmp_path):
    latency = LatencyReport(
        machine=Machine("test cpu", 2, [0.1, 0.1, 0.1]),
        threads={"1": {"pytorch eager (fp32)": Latency(20, 3.0, 2.5, p90_ms=3.5),
                       "model.onnx": Latency(20, 1.0, 0.9, p90_ms=1.2)}},
        not_measured={"model.mlpackage": "Core ML predicts only on macOS/iOS"},
        load_and_memory={"model.onnx": LoadAndMemory(load_ms=12.5, added_peak_rss_mib=30.0)}, method="test")
    table = latency_table(latency)
    assert "1 thread: median / p90 / min ms" in table and "1.000 / 1.200 / 0.900" in table
    assert re.search(r"^model.mlpackage +not timed", table, re.M) and "machine: test cpu, 2 cores" in table
    assert to_json(latency)["threads"]["1"]["model.onnx"]["median_ms"] == 1.0
    plot_latency(latency, "v", tmp_path / "latency.png")
    assert (tmp_path / "latency.png").read_bytes()[:4] == b"\x89PNG"


def test_one_table_formatter_aligns_columns():
    assert format_table(["a", "num"], [["xx", 1], ["y", 100]], right=[1]).splitlines() == [
        "a   num", "--  ---", "xx    1", "y   100"]


def test_limits_are_a_record():
    assert limits("int8") == Limits(None, 0.95, None)
