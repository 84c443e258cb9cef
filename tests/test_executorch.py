"""The ExecuTorch format with the real exporter and the real runtime (executorch.runtime, XNNPACK)."""
import gc
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

import edgecnn
from edgecnn.data.calibration import load_calibration
from edgecnn.schema.manifest import open_export
from edgecnn.weights.reference import reference_model
from edgecnn.formats.base import ExportJob
from edgecnn.schema.artifacts import Refusal
from edgecnn.formats.executorch import Runner, export as export_executorch
from edgecnn.harness.parity import CheckStatus
from edgecnn.zoo.models.layers import Hardswish, RawRGBInput, hard_sigmoid

SPEC = edgecnn.VariantSpec.create("mobilenet_v2", alpha=0.5, resolution=32, num_classes=10)


@pytest.fixture(scope="module")
def exported(app_exports):
    """The trained demo model (Fashion-MNIST) in every format, so that parity is gated (conftest)."""
    root = app_exports / SPEC.id
    return root, open_export(root)


def records(manifest):
    return {(a.format, a.precision): a for a in manifest.artifacts}


def test_both_programs_are_written_delegated_and_pass_their_parity_gate(exported):
    root, manifest = exported
    by = records(manifest)
    fp32, int8 = by[("executorch", "fp32")], by[("executorch", "int8")]
    assert (fp32.path, int8.path) == ("model_fp32.pte", "model_int8.pte")
    for record in (fp32, int8):
        assert manifest.parity[record.path].status is CheckStatus.PASSED, record.path
        assert record.details.backend == "XNNPACK" and record.details.xnnpack_partitions == 1
    assert int8.details.outside_delegate == {}  # nothing of the int8 program runs outside XNNPACK
    assert manifest.parity["model_fp32.pte"].parity.max_abs_error < 1e-3
    # the int8 program and the TFLite int8 share one I/O contract: the same input lookup table
    assert int8.input.dtype == "int8" and int8.input.layout == "NCHW" and fp32.input.layout == "NCHW"
    assert int8.input.encoding == by[("tflite", "int8")].input.encoding
    assert int8.output.dtype == "int8" and int8.output.quantization is not None
    assert fp32.input.dtype == "float32" and "normalisation folded" in fp32.input.values


def test_the_runner_answers_alike_at_every_thread_count(exported):
    """ExecuTorch's thread pool is process-wide: each runner sizes it before it runs."""
    root, manifest = exported
    record = records(manifest)[("executorch", "int8")]
    images = load_calibration(32, 3, progress=False).images
    first = Runner(root / record.path, record, threads=1)
    one = first.run(images)
    two = Runner(root / record.path, record, threads=2)
    again = Runner(root / record.path, record, threads=1)
    gc.collect()  # the program must outlive its constructor: its method runs on the program's arenas
    np.testing.assert_array_equal(two.run(images), one)
    np.testing.assert_array_equal(again.run(images), one)
    # `first` was loaded under a pool that two resets destroyed since (the XNNPACK delegate keeps the
    # pool it was built with): it must reload rather than run on a freed pool
    np.testing.assert_array_equal(first.run(images), one)


@pytest.mark.slow  # `make test-full`: test_latency's bench times and load-probes the same .pte files
def test_validate_times_the_programs_and_measures_their_load_in_a_fresh_process(exported, tmp_path):
    root, _ = exported
    result = subprocess.run([sys.executable, "-m", "edgecnn", "validate", str(root), "--out", str(tmp_path),
                             "--runs", "20", "--count", "4"], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "report.json").read_text())
    latency = report["latency"]
    for path in ("model_fp32.pte", "model_int8.pte"):
        assert all(path in by_config for by_config in latency["threads"].values()), path
        assert latency["load_and_memory"][path].get("error") is None and latency["load_and_memory"][path]["load_ms"] > 0


class CumulativeSum(nn.Module):
    """A running sum over channels between two convs: XNNPACK has no cumulative sum."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        return torch.flatten(self.pool(self.conv2(torch.cumsum(torch.relu(self.conv1(x)), dim=1))), 1)


def test_an_int8_program_with_compute_outside_xnnpack_is_refused_and_fp32_kept(tmp_path):
    model = CumulativeSum().eval()
    calibration = load_calibration(16, 4, progress=False).images
    job = ExportJob("cumsum", 16, 4, model, model, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), calibration,
                    [str(i) for i in range(4)], {}, tmp_path)
    written = export_executorch(job)
    assert [type(w).__name__ for w in written] == ["Artifact", "Refusal"]
    refusal = written[1]
    assert isinstance(refusal, Refusal) and refusal.precision == "int8"
    assert "not fully delegated to XNNPACK" in refusal.reason and "cumsum" in refusal.reason
    assert not (tmp_path / "model_int8.pte").exists() and (tmp_path / "model_fp32.pte").is_file()
    assert "aten.cumsum.default" in written[0].details.outside_delegate  # fp32: counted, allowed


def test_the_manifest_gate_reads_a_pte_export(exported):
    root, _ = exported
    manifest = open_export(root)
    assert {a.path for a in manifest.artifacts} >= {"model_fp32.pte", "model_int8.pte"}


def hardswish(x):
    return x * hard_sigmoid(x)


class HardSwishNet(nn.Module):
    """Convs with MobileNetV3's hard-swish between them: `x * relu6(x + 3) * (1 / 6)`, scalars included."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1, groups=8)

    def forward(self, x):
        x = hardswish(self.conv1(x))
        return hardswish(self.conv2(x)) - 0.5


class HardSwishClassifier(nn.Module):
    """The zoo's hard-swish modules between convs, then a pooled linear head."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), Hardswish(),
                                      nn.Conv2d(16, 16, 3, padding=1, groups=16), Hardswish())
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        return self.head(torch.flatten(self.features(x).mean((2, 3), keepdim=True), 1))


def test_int8_hard_swish_runs_as_one_xnnpack_operator_and_keeps_the_float_function(tmp_path):
    from edgecnn.formats.executorch import operator_profile

    torch.manual_seed(0)
    model = HardSwishClassifier().eval()
    calibration = load_calibration(24, 8, progress=False).images
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    raw = RawRGBInput(model, mean, std)  # the fp32 program takes raw RGB, the int8 one the normalised image
    job = ExportJob("hardswish", 24, 4, raw, model, mean, std, calibration, [str(i) for i in range(4)], {}, tmp_path)
    written = export_executorch(job)
    assert [type(w).__name__ for w in written] == ["Artifact", "Artifact"]
    profile = {t.kind: t.count for t in operator_profile(tmp_path / "model_int8.pte", runs=2)}
    assert profile.get("HardSwish (NC)") == 2 and "Multiply (ND)" not in profile and "Add (ND)" not in profile
    assert not any(kind.startswith("Convert") for kind in profile)  # int8 throughout
    assert {t.kind: t.count for t in operator_profile(tmp_path / "model_fp32.pte", runs=2)}.get("HardSwish (NC)") == 2
    images = load_calibration(24, 16, progress=False).images
    with torch.no_grad():
        expected = raw(torch.from_numpy(images).permute(0, 3, 1, 2).float()).numpy()
    int8 = Runner(tmp_path / "model_int8.pte", written[1].record(tmp_path), threads=1).run(images)
    fp32 = Runner(tmp_path / "model_fp32.pte", written[0].record(tmp_path), threads=1).run(images)
    assert np.abs(fp32 - expected).max() <= 1e-4 * np.abs(expected).max()
    cosine = (int8 * expected).sum(1) / np.linalg.norm(int8, axis=1) / np.linalg.norm(expected, axis=1)
    assert cosine.min() > 0.99, cosine


def test_scalar_operands_of_4d_elementwise_ops_become_4d_constants_with_the_same_values():
    from edgecnn.formats.executorch import scalars_as_4d_tensors

    model, sample = HardSwishNet().eval(), torch.randn(1, 3, 8, 8)
    graph = torch.export.export(model, (sample,), strict=True).module()
    rewritten = scalars_as_4d_tensors(graph)
    elementwise = [n for n in rewritten.graph.nodes if n.op == "call_function" and
                   n.target in (torch.ops.aten.add.Tensor, torch.ops.aten.mul.Tensor, torch.ops.aten.sub.Tensor)]
    assert len(elementwise) == 7  # per hard-swish: + 3, * 1/6, x * ...; then - 0.5
    assert all(isinstance(n.args[1], torch.fx.Node) for n in elementwise)
    constants = [getattr(rewritten, n.args[1].target) for n in elementwise if n.args[1].op == "get_attr"]
    assert len(constants) == 5 and all(c.shape == (1, 1, 1, 1) for c in constants)
    for x in (sample, 4 * torch.randn(1, 3, 8, 8)):
        assert torch.equal(rewritten(x), model(x))


def test_the_operator_profile_counts_the_programs_xnnpack_operators(exported):
    from edgecnn.formats.executorch import operator_profile

    root, manifest = exported
    depthwise = sum(1 for m in reference_model(manifest, root).model.modules()
                    if isinstance(m, nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels)
    profile = {t.kind: t for t in operator_profile(root / "model_int8.pte", threads=1, runs=3)}
    assert profile["Convolution (NHWC, QC8) DWConv"].count == depthwise
    assert all(t.ms >= 0 for t in profile.values()) and sum(t.ms for t in profile.values()) > 0
    # int8 in, int8 out: the only float work would be a Convert at an edge, and there is none
    assert not any(kind.startswith("Convert") for kind in profile)


class PaddedMaxPoolNet(nn.Module):
    """ResNet's stem in small: conv, ReLU, a padded max pool."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2, 1))
        self.head = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.stem(x).mean((2, 3), keepdim=True), 1))


def test_a_padded_max_pool_runs_as_one_int8_xnnpack_operator(tmp_path):
    """Not as the zero pad and unpadded pool the TFLite needs: ExecuTorch left that pad in float."""
    from edgecnn.formats.executorch import operator_profile

    torch.manual_seed(0)
    model = PaddedMaxPoolNet().eval()
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    job = ExportJob("maxpool", 24, 4, RawRGBInput(model, mean, std), model, mean, std,
                    load_calibration(24, 8, progress=False).images, [str(i) for i in range(4)], {}, tmp_path)
    assert [type(w).__name__ for w in export_executorch(job)] == ["Artifact", "Artifact"]
    int8 = {t.kind: t.count for t in operator_profile(tmp_path / "model_int8.pte", runs=2)}
    assert int8.get("Max Pooling (NHWC, S8)") == 1
    assert not any(kind.startswith(("Constant Pad", "Convert")) for kind in int8), int8
    fp32 = {t.kind: t.count for t in operator_profile(tmp_path / "model_fp32.pte", runs=2)}
    assert not any(kind.startswith("Constant Pad") for kind in fp32), fp32


def test_every_tflite_and_pte_carries_its_contract(exported):
    """Once a file leaves its folder it still says what it takes and what its outputs mean: labels,
    normalisation, preprocessing, input encoding (the int8 lookup table) and output quantization."""
    from edgecnn.formats import litert
    from edgecnn.formats.executorch import read_contract
    from edgecnn.schema.contract import CONTRACT_KEY, parse_contract
    from edgecnn.schema.enums import FormatName

    root, manifest = exported
    labels = (root / "labels.txt").read_text().splitlines()
    carried = [a for a in manifest.artifacts if a.format in (FormatName.TFLITE, FormatName.EXECUTORCH)]
    assert {(a.format, a.precision.value) for a in carried} >= {(FormatName.TFLITE, "int8"),
                                                                (FormatName.EXECUTORCH, "int8")}
    for artifact in carried:
        path = root / artifact.path
        text = (litert.read_metadata(path, CONTRACT_KEY).decode() if artifact.format == FormatName.TFLITE
                else read_contract(path))
        contract = parse_contract(text, artifact.path)
        assert contract.variant == manifest.variant and contract.precision == artifact.precision
        assert contract.labels == labels and contract.labels[0] == "T-shirt/top"
        assert (contract.mean, contract.std) == (manifest.mean, manifest.std)
        assert contract.preprocessing == manifest.preprocessing
        assert contract.input == artifact.input and contract.output == artifact.output


def test_inspect_int8_reads_the_int8_pte_with_the_tflites_layer_names(exported, tmp_path, capsys):
    """The .pte's per-layer values come from the quantized graph that was lowered, checked against the runtime;
    its layers carry the same module names as the TFLite's, so the two int8 files compare layer by layer."""
    from edgecnn.cli import main

    root, _ = exported
    before = sorted(p.name for p in root.iterdir())
    for artifact, out in (("model_int8.pte", "pte"), ("model_int8.tflite", "tflite")):
        code = main(["inspect-int8", str(root), "--artifact", artifact, "--count", "4", "--out", str(tmp_path / out)])
        assert code == 0, capsys.readouterr().err
    assert "4 images" in capsys.readouterr().out
    pte = json.loads((tmp_path / "pte" / "layers.json").read_text())
    tflite = json.loads((tmp_path / "tflite" / "layers.json").read_text())
    assert pte["schema"] == tflite["schema"] and pte["artifact"] == "model_int8.pte"
    assert pte["method"].startswith("the quantized graph that was lowered") and tflite["method"] is None
    # the rebuilt graph is the program the runtime ran: its logits within a few int8 codes of the runtime's
    assert pte["runtime_cosine"] >= 0.999 and pte["runtime_code_difference"] <= 4, pte
    assert pte["replay_cosine"] >= 0.9999
    modules = lambda report: [l["module"] for l in report["layers"] if "conv" in l["op"].lower()]  # noqa: E731
    assert modules(pte) == modules(tflite) and len(modules(pte)) > 30
    for layer in pte["layers"]:
        assert layer["local_sqnr_db"] > 15 and 0 < layer["cosine"] <= 1 and layer["scale"] > 0
    assert "runtime's on the same images" in (tmp_path / "pte" / "layers.md").read_text()
    assert (tmp_path / "pte" / "layers.png").read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in root.iterdir()) == before  # --out: the export is left as it was
    assert main(["inspect-int8", str(root), "--artifact", "model.onnx"]) == 2
    err = capsys.readouterr().err
    assert "has no int8 file model.onnx (its int8 files: model_int8.tflite, model_int8.pte" in err
    assert len(err.strip().splitlines()) == 1
