"""`edgecnn inspect-int8` and the rejected int8 of a failing export, on a ResNet whose int8 is broken on
purpose while its float function is kept: output channels of one conv+BN unit scaled by s, the matching
input channels of the next conv by 1/s, a ReLU between (relu(s y) = s relu(y))."""
import json
import shutil

import numpy as np
import pytest
import torch

import edgecnn
from edgecnn.cli import main
from edgecnn.data.calibration import load_calibration
from edgecnn.schema.enums import RepairMode
from edgecnn.schema.manifest import open_export
from edgecnn.exporter.pipeline import ExportRequest, run_export
from edgecnn.weights.reference import prepare_model
from edgecnn.formats import parse_formats
from edgecnn.harness.inspect_int8 import SCHEMA, run_inspection
from edgecnn.util.errors import ExportError

SPEC = edgecnn.VariantSpec.create("resnet18", alpha=0.5, resolution=64)
BROKEN_UNIT, NEXT_CONV, SCALE, CHANNELS = "layer2.0.conv1", "layer2.0.conv2", 50.0, 8


def break_int8(net: torch.nn.Module) -> None:
    block = net.layer2[0]
    with torch.no_grad():
        block.bn1.weight[:CHANNELS] *= SCALE
        block.bn1.bias[:CHANNELS] *= SCALE
        block.conv2.weight[:, :CHANNELS] /= SCALE


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """The same random ResNet (BatchNorm statistics re-estimated on photos), intact and broken."""
    folder = tmp_path_factory.mktemp("checkpoints")
    model, _ = prepare_model(SPEC, None, load_calibration(SPEC.resolution, 100, progress=False).images)
    torch.save(model.model.state_dict(), folder / "intact.pth")
    x = torch.from_numpy(load_calibration(SPEC.resolution, 8, progress=False).images).permute(0, 3, 1, 2).float()
    with torch.no_grad():
        before = model(x)
        break_int8(model.model)
        after = model(x)
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4 * float(before.abs().max()))  # same function
    torch.save(model.model.state_dict(), folder / "broken.pth")
    return folder


@pytest.fixture(scope="module")
def rejected_export(checkpoints, tmp_path_factory):
    request = ExportRequest(SPEC, parse_formats("tflite"), weights=str(checkpoints / "broken.pth"),
                            out=tmp_path_factory.mktemp("export") / SPEC.id, validate=False, int8_repair=RepairMode.NONE)
    with pytest.raises(ExportError) as failure:
        run_export(request)
    return request.target, str(failure.value)


def test_a_failing_int8_is_kept_as_rejected_with_its_inspection_and_what_passed_is_written(rejected_export):
    root, message = rejected_export
    manifest = open_export(root)  # a complete export: the gate reads it
    assert [a.path for a in manifest.artifacts] == ["model_fp32.tflite"]
    [refusal] = manifest.refused
    assert (refusal.precision, refusal.kept) == ("int8", "rejected/model_int8.tflite")
    assert refusal.reason.startswith("model_int8.tflite (int8): ")
    assert refusal.details.repair.mode == RepairMode.NONE  # the rejected file's record comes with it
    assert (root / "rejected" / "model_int8.tflite").is_file() and not (root / "model_int8.tflite").exists()
    for name in ("layers.json", "layers.md", "layers.png"):
        assert (root / "rejected" / "inspect-int8" / name).stat().st_size > 0
    # the error line points at the worst layer and at the inspection
    assert f"worst layers by their own error: {BROKEN_UNIT} (CONV_2D" in message
    assert str(root / "rejected" / "inspect-int8" / "layers.md") in message


def test_the_inspector_ranks_the_broken_unit_worst_by_its_own_error(rejected_export):
    root, _ = rejected_export
    layers = json.loads((root / "rejected" / "inspect-int8" / "layers.json").read_text())
    assert layers["schema"] == SCHEMA and layers["replay_cosine"] > 0.9999
    rows = layers["layers"]
    assert [r["index"] for r in rows] == list(range(len(rows)))  # network order
    worst = min(rows, key=lambda r: r["local_sqnr_db"])
    assert worst["module"] == BROKEN_UNIT and worst["op"] == "CONV_2D"
    # by a margin, not by noise: only the next conv comes close (its weights on the shrunk input channels,
    # divided by s, round away in int8: its own error too)
    close = {r["module"] for r in rows if r["local_sqnr_db"] < worst["local_sqnr_db"] + 6}
    assert close == {BROKEN_UNIT, NEXT_CONV}
    # every conv of the network is there, by its named_modules() path
    convs = {n for n, m in edgecnn.create_model("resnet18", alpha=0.5).named_modules()
             if isinstance(m, torch.nn.Conv2d)}
    assert convs <= {r["module"] for r in rows}
    md = (root / "rejected" / "inspect-int8" / "layers.md").read_text()
    table = md.split("```")[1].strip().splitlines()
    assert table[2].split()[0] == BROKEN_UNIT  # the worst-10 table starts with it


@pytest.fixture(scope="module")
def intact_export(checkpoints, tmp_path_factory):
    request = ExportRequest(SPEC, parse_formats("tflite"), weights=str(checkpoints / "intact.pth"),
                            out=tmp_path_factory.mktemp("intact") / SPEC.id, latency=None, int8_repair=RepairMode.NONE)
    run_export(request)
    return request.target


def test_inspect_int8_cli_on_an_export_writes_the_three_files(intact_export, capsys):
    assert main(["inspect-int8", str(intact_export), "--count", "4"]) == 0
    out = capsys.readouterr().out
    assert "the worst by their own error" in out and "inspection: " in out
    layers = json.loads((intact_export / "inspect-int8" / "layers.json").read_text())
    assert layers["images"] == 4 and len(layers["layers"]) > 20
    assert all(np.isfinite([r["local_sqnr_db"], r["sqnr_db"], r["cosine"]]).all() for r in layers["layers"])


def test_inspect_int8_out_writes_elsewhere_and_leaves_the_export_as_it_was(intact_export, tmp_path, capsys):
    """An export someone handed over (read-only, say) is inspected into a folder of the user's choice."""
    copy = tmp_path / "handed-over"
    shutil.copytree(intact_export, copy, ignore=shutil.ignore_patterns("inspect-int8"))
    before = sorted((p.relative_to(copy), p.stat().st_mtime_ns) for p in copy.rglob("*"))
    assert main(["inspect-int8", str(copy), "--count", "2", "--out", str(tmp_path / "report")]) == 0
    assert f"inspection: {tmp_path / 'report' / 'layers.md'}" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == ["inspect-int8.log", "layers.json", "layers.md",
                                                                      "layers.png"]
    assert sorted((p.relative_to(copy), p.stat().st_mtime_ns) for p in copy.rglob("*")) == before


@pytest.mark.parametrize("args, message", [
    (["--count", "0"], "--count must be at least 1"),
])
def test_inspect_int8_refuses_bad_input_in_one_line(checkpoints, tmp_path, capsys, args, message):
    assert main(["inspect-int8", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


def _int8_worst_cosine(root):
    manifest = open_export(root)
    return manifest.parity["model_int8.tflite"].parity.worst_cosine, manifest


def test_repair_brings_the_broken_int8_back_to_the_intact_models_cosine(checkpoints, intact_export, tmp_path):
    repaired = ExportRequest(SPEC, parse_formats("tflite,executorch"), weights=str(checkpoints / "broken.pth"),
                             out=tmp_path / "repaired", latency=None)  # --int8-repair auto is the default
    run_export(repaired)
    # the int8 .pte is held to the same bound, measured by ExecuTorch's runtime, and repaired the same way
    pte = next(a for a in open_export(repaired.target).artifacts if a.path == "model_int8.pte")
    assert pte.details.repair.applied and pte.details.repair.applied[0].startswith("cross-layer equalisation")
    plain_pte, candidate_pte = pte.details.repair.candidates
    assert plain_pte.measured.value < 0.95 < candidate_pte.measured.value and pte.details.repair.final.met
    assert not list(repaired.target.glob("*repair-candidate*"))
    # its inspection re-quantizes the remedied network, as the program was made: the runtime agrees
    inspection, _ = run_inspection(repaired.target, count=1, out=tmp_path / "pte", artifact="model_int8.pte")
    assert inspection.runtime_cosine >= 0.999 and any(l.module == BROKEN_UNIT for l in inspection.layers)
    intact_cosine, _ = _int8_worst_cosine(intact_export)
    repaired_cosine, manifest = _int8_worst_cosine(repaired.target)
    assert repaired_cosine >= intact_cosine - 0.002
    repair = next(a for a in manifest.artifacts if a.path == "model_int8.tflite").details.repair
    assert repair.applied and repair.applied[0].startswith("cross-layer equalisation")
    plain, candidate = repair.candidates
    assert plain.remedies == [] and plain.measured.metric == "cosine"
    assert plain.measured.value < 0.95 < candidate.measured.value
    # the validation report shows every layer before and after: the broken unit's own error is repaired
    comparison = json.loads((repaired.target / "validation" / "int8-repair" / "layers.json").read_text())
    assert comparison["schema"] == "edgecnn.int8-repair-layers/1" and comparison["remedies"] == repair.applied
    broken = next(l for l in comparison["layers"] if l["module"] == BROKEN_UNIT)
    assert broken["local_sqnr_db_after"] > broken["local_sqnr_db_before"] + 10
    assert comparison["output_sqnr_db"]["after"] > comparison["output_sqnr_db"]["before"]
    report = (repaired.target / "validation" / "report.md").read_text()
    assert "## int8 before and after repair" in report and "int8-repair/layers.md" in report
    assert (repaired.target / "validation" / "int8-repair" / "layers.png").read_bytes()[:4] == b"\x89PNG"
    assert not list(repaired.target.glob(".model_int8*"))  # the file before repair is not left behind


@pytest.mark.slow  # `make test-full`: keeps `make test` within its 20 minutes
def test_a_target_that_cannot_be_met_is_one_line_naming_the_layers_in_the_way(checkpoints, tmp_path, capsys):
    out = tmp_path / "strict"
    code = main(["export", "--model", "resnet18", "--alpha", "0.5", "--resolution", "64", "--formats", "tflite",
                 "--weights", str(checkpoints / "intact.pth"), "--out", str(out), "--no-validate",
                 "--int8-target", "cosine=0.99999"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1
    assert "misses --int8-target cosine=0.99999" in err[0] and "worst layers by their own error: " in err[0]
    assert (out / "rejected" / "inspect-int8" / "layers.md").is_file()


@pytest.mark.parametrize("target", ["cosine", "cosine=2", "top5=0.9", "cosine=x"])
def test_a_bad_int8_target_is_one_line(target, tmp_path, capsys):
    code = main(["export", "--model", "resnet18", "--int8-target", target, "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--int8-target" in err and not (tmp_path / "x").exists()


@pytest.mark.quick
def test_the_layer_plot_numbers_the_worst_layers_without_overlap_and_names_them_below():
    """Neighbouring worst layers with long module paths: the numbers on the plot and the box of names do not
    overlap each other (their names written at the points did)."""
    import itertools

    from edgecnn.harness.inspect_int8 import figure
    from edgecnn.schema.int8 import Int8Inspection, LayerError

    layers = [LayerError(i, f"features.{i // 3}.conv.{i % 3}.a_long_module_name", "CONV_2D",
                         30.0 + i % 7 - (10 if i in (20, 21, 22) else 0), 0.99, 25.0 - i / 10, 0.99, 0.01, 0, 0.3, 0.0)
              for i in range(60)]
    fig = figure(Int8Inspection("v", "model_int8.tflite", 8, "photos", 0.999, layers))
    renderer = fig.canvas.get_renderer()
    numbers = [t for ax in fig.axes for t in ax.texts]
    assert [t.get_text() for t in numbers] == ["1", "2", "3"]
    names = fig.texts[-1].get_text().splitlines()
    assert names[1:] == ["1  features.7.conv.0.a_long_module_name (CONV_2D): local SQNR 20.0 dB",
                         "2  features.7.conv.1.a_long_module_name (CONV_2D): local SQNR 21.0 dB",
                         "3  features.6.conv.2.a_long_module_name (CONV_2D): local SQNR 26.0 dB"]
    boxes = [t.get_window_extent(renderer) for t in [*numbers, *fig.texts, fig.axes[0].get_legend()]]
    assert not any(a.overlaps(b) for a, b in itertools.combinations(boxes, 2))
    axes_box = fig.axes[0].get_window_extent(renderer)
    assert fig.texts[-1].get_window_extent(renderer).y1 < axes_box.y0  # the names sit below the plot


@pytest.mark.quick
def test_plot_titles_give_the_load_average_rounded():
    from edgecnn.schema.latency import Machine

    machine = Machine("Xeon", 2, [1.86376953125, 0.5, 0.25])
    assert machine.line() == "machine: Xeon, 2 cores, load 1.86/0.50/0.25"
