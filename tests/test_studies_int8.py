"""`make int8-zoo`, `make bench-zoo` and the int8 error split on a small scale: real exports, validation and timing."""
import dataclasses
import json

import numpy as np
import pytest
import torch

import edgecnn
from edgecnn.data.calibration import load_calibration
from benchmarks import bench_zoo, int8_zoo


@pytest.mark.slow  # `make test-full`: repeats coverage `make test` has (kept within its 20 minutes)
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


@pytest.mark.slow  # `make test-full`: repeats coverage `make test` has (kept within its 20 minutes)
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


def test_the_error_split_shows_both_halves_of_a_broken_int8_and_the_activation_to_blame(tmp_path):
    """A network whose int8 is broken on purpose (four channels of the first conv scaled by 50, divided out by
    the next conv: the same float function): its ReLU output's int8 grid gets 50x coarser for the other
    channels, and the next conv's weights on the shrunk channels keep few levels. The split shows both:
    activations alone and weights alone each lose SQNR against the intact network, and that ReLU output is
    the one activation whose unrounding gains. Unrounding everything gives PyTorch's logits back. 16-bit
    activations leave about the weights' error alone; calibrated on flat grey images, the
    int8 graph clips the photos it is measured on, and rounding without clipping wins that back."""
    from edgecnn.data.preprocess import Int8InputEncoding
    from edgecnn.formats import tflite
    from edgecnn.formats.base import ExportJob
    from benchmarks import int8_error_split as split
    from edgecnn.zoo.models.layers import RawRGBInput

    torch.manual_seed(0)
    backbone = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                                   torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.ReLU(),
                                   torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(1), torch.nn.Linear(8, 4)).eval()
    mean, std = (0.5,) * 3, (0.25,) * 3
    images = load_calibration(32, 24, progress=False).images
    encoding = Int8InputEncoding.for_normalization(mean, std)
    normalized = torch.from_numpy(encoding.decode(encoding.encode(images)))

    def job_of(network, calibration=images[:16]):
        return ExportJob("split_net", 32, 4, RawRGBInput(network, mean, std).eval(), network, mean, std, calibration,
                         [f"c{i}" for i in range(4)], {}, tmp_path)

    def pytorch(network):
        with torch.no_grad():
            return network(normalized.permute(0, 3, 1, 2)).numpy().astype(np.float64)

    def measured(network, calibration=images[:16]):
        reference = pytorch(network)
        graph = tflite.quantize(job_of(network, calibration), network, any_batch=True).graph
        unrounded = split.without_rounding(split.without_rounding(graph, split.Rounding.WEIGHTS),
                                           split.Rounding.ACTIVATIONS)
        with torch.no_grad():
            np.testing.assert_allclose(unrounded(normalized).numpy(), reference, rtol=1e-4, atol=1e-5)
        return split.split_error(graph, normalized, reference, "split-net", tflite.WRAPPER_PREFIX)

    intact = measured(backbone)
    # the file LiteRT runs: this small network's two kernel sets agree far closer than either does with PyTorch
    artifact, quantized = tflite.export_int8(job_of(backbone), backbone)
    with torch.no_grad():
        simulated = np.concatenate([quantized.graph(normalized[i:i + 1]).numpy() for i in range(len(images))])
    spread = split.kernel_spread(tmp_path / artifact.path, images, encoding, simulated.astype(np.float64),
                                 pytorch(backbone))
    assert abs(spread.xnnpack.sqnr_db - intact.int8.sqnr_db) < 3 and abs(spread.reference_kernels.sqnr_db - intact.int8.sqnr_db) < 3
    assert spread.between_kernels.sqnr_db > intact.int8.sqnr_db + 10 and spread.xnnpack_vs_simulation.sqnr_db > intact.int8.sqnr_db + 10
    assert "XNNPACK" in split.markdown(dataclasses.replace(intact, litert=spread))
    grey = measured(backbone, np.full_like(images[:16], 128))  # flat grey: every range far too narrow
    assert grey.unclipped.sqnr_db > grey.int8.sqnr_db + 3 and intact.unclipped.sqnr_db > intact.int8.sqnr_db - 0.5
    with torch.no_grad():
        backbone[0].weight[:4] *= 50.0
        backbone[0].bias[:4] *= 50.0
        backbone[2].weight[:, :4] /= 50.0
    broken = measured(backbone)
    assert broken.int8.sqnr_db < intact.int8.sqnr_db - 10
    assert broken.activations_only.sqnr_db < intact.activations_only.sqnr_db - 5
    assert broken.weights_only.sqnr_db < intact.weights_only.sqnr_db - 5
    for case in (intact, broken):
        assert min(case.weights_only.sqnr_db, case.activations_only.sqnr_db) >= case.int8.sqnr_db
        assert abs(case.activations_16bit.sqnr_db - case.weights_only.sqnr_db) < 3, case
    assert intact.activations_16bit.sqnr_db > intact.int8.sqnr_db + 5
    first, *rest = broken.tensors
    assert (first.module, first.operator) == ("1", "relu") and first.gain_db > 1.0
    assert all(t.gain_db < 0.2 for t in rest), rest
    written = split.write(broken, tmp_path / "results")
    document = json.loads(written[0].read_text())
    assert document["schema"] == split.SCHEMA and document["tensors"][0]["tensor"] == first.tensor
    assert "split-net" in written[1].read_text() and written[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
