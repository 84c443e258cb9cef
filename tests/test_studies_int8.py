"""`make int8-zoo` and `make bench-zoo` on a small scale: real exports, validation and timing."""
import json

import pytest

import edgecnn
from edgecnn.studies import bench_zoo, int8_zoo


def test_an_int8_zoo_row_reproduces_through_export_and_validate(tmp_path):
    row = int8_zoo.measure("fashion-mnist-resnet18", "none", tmp_path, count=1000)
    assert (row.model, row.alpha, row.resolution, row.repair, row.images) == ("resnet18", 0.25, 32, "none", 1000)
    assert row.fp32_top1 > 0.85 and abs(row.fp32_top1 - row.int8_top1) < 0.01 and row.agreement > 0.98
    int8_zoo.write([row], tmp_path / "results")
    document = json.loads((tmp_path / "results" / "int8-zoo.json").read_text())
    assert document["schema"] == "edgecnn.int8-zoo/1"
    assert set(document["rows"][0]) >= {"model", "alpha", "resolution", "weights", "repair", "fp32_top1",
                                        "int8_top1", "agreement"}
    assert "fashion-mnist-resnet18" in (tmp_path / "results" / "int8-zoo.md").read_text()
    assert (tmp_path / "results" / "int8-zoo.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a later run of one model replaces that model's rows and keeps the others'
    other = int8_zoo.Int8ZooRow("vgg16", 0.125, 32, "fashion-mnist-vgg16", "none", 0.9, 0.9, 0.99, [], 1000)
    remeasured = int8_zoo.Int8ZooRow(**{**json.loads(json.dumps(document["rows"][0])), "agreement": 0.5})
    int8_zoo.write([row, other], tmp_path / "results", ["fashion-mnist-vgg16 --int8-repair auto: missed"])
    rows, failures = int8_zoo.merged(tmp_path / "results" / "int8-zoo.json", [remeasured], [], [row.weights])
    assert [(r.weights, r.agreement) for r in rows] == [(row.weights, 0.5), ("fashion-mnist-vgg16", 0.99)]
    assert failures == ["fashion-mnist-vgg16 --int8-repair auto: missed"]


def test_bench_zoo_times_both_precisions_at_each_thread_count(tmp_path):
    spec = edgecnn.VariantSpec.create("resnet18", alpha=0.25, resolution=64)
    rows = bench_zoo.bench_variant(spec, tmp_path, budget_s=0.3)
    assert [r.threads for r in rows] == list(bench_zoo.THREADS)
    for r in rows:
        assert r.fp32_ms > 0 and r.int8_ms > 0 and r.ratio == pytest.approx(r.int8_ms / r.fp32_ms, abs=1e-3)
        assert (r.fp32_pieces, r.int8_pieces, r.int8_requantize_ops) == (1, 1, 0)
    bench_zoo.plot(rows, tmp_path / "plot.png")
    assert (tmp_path / "plot.png").stat().st_size > 1000


def test_the_studies_refuse_unknown_names_in_one_line(capsys):
    assert int8_zoo.main(["--weights", "no-such-model", "--out", "/nonexistent"]) == 2
    assert bench_zoo.main(["--models", "no_such_model", "--out", "/nonexistent"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("edgecnn: error: ") for line in err)
