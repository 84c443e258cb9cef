"""`edgecnn sweep`: a real (small) grid, its table and plot, the frontier rule, resuming, refusals."""
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from edgecnn.data.calibration import load_calibration
from edgecnn.formats import parse_formats
from edgecnn.harness.latency import LatencyOptions
from edgecnn.sweeps.sweep import SweepRequest, pareto, read_sweep, run_sweep
from edgecnn.schema.report import REPORT_SCHEMA
from edgecnn.sweeps.variants import Executor, VariantStatus, VariantWork, finished_report


def test_pareto_keeps_what_nothing_beats():
    # (cost, value): lower cost and higher value are better
    points = [(1.0, 10.0), (2.0, 20.0), (2.5, 15.0), (3.0, 20.0), (0.5, 5.0), (1.0, 10.0)]
    assert pareto(points) == [True, True, False, False, True, True]  # ties both stay


@pytest.mark.quick
def test_an_earlier_report_that_does_not_parse_is_validated_again(tmp_path, capfd):
    work = VariantWork("mobilenet_v2", 0.35, 64, tmp_path / "v", ("tflite",))
    (tmp_path / "v" / "validation").mkdir(parents=True)
    report = tmp_path / "v" / "validation" / "report.json"
    report.write_text(json.dumps({"schema": REPORT_SCHEMA, "variant": work.spec.id, "latency": {"threads": 1}}))
    assert finished_report(work) is None
    err = capfd.readouterr().err
    assert f"[sweep] mobilenet_v2_a0.35_r64: the earlier report is not read ({report} does not follow" in err
    report.write_text("{")
    assert finished_report(work) is None
    assert "the earlier report is not read" in capfd.readouterr().err


@pytest.fixture(scope="module")
def swept(serial_sweep):
    return serial_sweep  # the session's serial sweep (conftest), which test_ray also compares with


def test_sweep_writes_one_row_per_variant_with_frontiers(swept):
    request, summary = swept
    rows = summary.rows
    assert [r.variant for r in rows] == ["mobilenet_v2_a0.35_r32", "mobilenet_v2_a0.5_r32"]
    assert rows[0].macs < rows[1].macs and rows[0].params < rows[1].params
    for r in rows:
        assert r.int8_ms["1"] > 0 and 0 <= r.int8_top1 <= 1 and r.int8_bytes > 0 and r.pytorch_ms["1"] > 0
        assert (r.status, r.executor, r.node.node_id) == (VariantStatus.DONE, Executor.SERIAL, "local")
        assert r.node.cores >= 1 and r.timed_on.cores == r.node.cores and r.error is None
    costs = [(r.int8_ms["1"], r.macs) for r in rows]
    assert [r.frontier_macs for r in rows] == pareto(costs)
    assert [r.frontier_accuracy for r in rows] == pareto([(r.int8_ms["1"], r.int8_top1) for r in rows])
    written = json.loads((request.out / "sweep.json").read_text())
    assert written["rows"][0]["status"] == "done" and written["rows"][0]["executor"] == "serial"  # enums by value
    assert read_sweep(request.out / "sweep.json") == summary  # read back into the same records
    table = (request.out / "sweep.md").read_text()
    assert table.count("| mobilenet_v2_a0") == 2 and "int8 top-1" in table
    assert (request.out / "sweep.png").read_bytes()[:4] == b"\x89PNG"


def test_a_rerun_keeps_finished_variants_and_redoes_only_what_is_missing(swept, capfd):
    request, first = swept
    kept = request.out / "mobilenet_v2_a0.35_r32"
    redo = request.out / "mobilenet_v2_a0.5_r32"
    kept_mtime = (kept / "validation" / "report.json").stat().st_mtime_ns
    manifest_mtime = (redo / "manifest.json").stat().st_mtime_ns
    import shutil

    shutil.rmtree(redo / "validation")  # as if interrupted after its export
    capfd.readouterr()
    second = run_sweep(request)
    err = capfd.readouterr().err
    assert "[sweep] 1 of 2 variants finished earlier, kept" in err
    assert "[sweep] mobilenet_v2_a0.5_r32: done" in err and "mobilenet_v2_a0.35_r32: done" not in err
    assert [r.status for r in second.rows] == [VariantStatus.KEPT, VariantStatus.DONE]
    assert (kept / "validation" / "report.json").stat().st_mtime_ns == kept_mtime
    assert (redo / "manifest.json").stat().st_mtime_ns == manifest_mtime  # validated again, not re-exported
    assert (redo / "validation" / "report.json").is_file()
    assert [r.variant for r in second.rows] == [r.variant for r in first.rows]
    assert np.isclose(second.rows[0].int8_ms["1"], first.rows[0].int8_ms["1"])
    assert second.rows[0].int8_top1 == first.rows[0].int8_top1  # the kept report, parsed back


@pytest.mark.parametrize("args, message", [
    (["--alphas", "0.5,x"], "--alphas takes comma-separated numbers, got 'x'"),
    (["--alphas", "0.5,7"], "alpha"),
    (["--resolutions", "96.5"], "--resolutions takes comma-separated numbers, got '96.5'"),
    (["--formats", "onnx"], "--formats must include tflite"),
    (["--threads", "0"], "--threads must be at least 1"),
    (["--model-args", "{}"], "--model-args is for your own model (--model MODULE:ATTR)"),
    (["--model", "geffnet:create_model", "--alphas", "0.5"], "--alphas applies to the zoo's models"),
    (["--model", "geffnet:create_modle"], "geffnet has no attribute 'create_modle' (did you mean create_model?)"),
    (["--model", "geffnet:create_model", "--model-args", "[1]"], "--model-args must be a JSON object"),
])
def test_bad_sweep_input_is_one_line(tmp_path, args, message):
    model = [] if "--model" in args else ["--model", "mobilenet_v2"]
    result = subprocess.run([sys.executable, "-m", "edgecnn", "sweep", *model, "--resolutions",
                             "96", *args, "--out", str(tmp_path / "s")], capture_output=True, text=True, timeout=300)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and message in lines[0], result.stderr
    assert not (tmp_path / "s").exists()


def test_your_own_model_is_swept_across_resolutions(tmp_path):
    """`sweep --model FILE.py:ATTR`: each resolution built, exported and timed as `export --model` does it."""
    (tmp_path / "pairs.py").write_text(
        "import torch\nfrom torch import nn\n\n\nclass Pair(nn.Module):\n"
        "    def __init__(self, classes: int = 4):\n        super().__init__()\n"
        "        self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)\n        self.head = nn.Linear(8, classes)\n\n"
        "    def forward(self, x):\n        return self.head(torch.relu(self.conv(x)).mean((2, 3)))\n"
    )
    result = subprocess.run([sys.executable, "-m", "edgecnn", "sweep", "--model", "pairs.py:Pair", "--model-args",
                             '{"classes": 3}', "--resolutions", "32,48", "--runs", "10", "--threads", "1"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = read_sweep(tmp_path / "export" / "sweep-Pair" / "sweep.json")
    assert [r.variant for r in summary.rows] == ["Pair_r32", "Pair_r48"] and summary.alphas == [1.0]
    assert summary.rows[0].macs < summary.rows[1].macs and all(r.int8_ms["1"] > 0 for r in summary.rows)
    manifest = json.loads((tmp_path / "export" / "sweep-Pair" / "Pair_r48" / "manifest.json").read_text())
    assert manifest["origin"]["arguments"] == {"classes": 3} and manifest["num_classes"] == 3
    assert manifest["origin"]["built_by"].endswith("pairs.py:Pair")
