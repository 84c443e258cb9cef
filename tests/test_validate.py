"""`edgecnn validate`: real runtimes on a real export, a report on disk, and one-line refusals."""
import dataclasses
import json
import platform
import shutil
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from PIL import Image

import edgecnn
from edgecnn.data.calibration import load_calibration
from edgecnn.util.errors import UsageError
from edgecnn.exporter.pipeline import ExportRequest, run_export
from edgecnn.formats import parse_formats, sha256_of
from edgecnn.harness.latency import LatencyOptions
from edgecnn.data.preprocess import preprocess
from edgecnn.schema.manifest import MANIFEST_SCHEMA, open_export
from edgecnn.weights.reference import reference_model
from edgecnn.harness.parity import CheckStatus
from edgecnn.schema.report import REPORT_SCHEMA
from edgecnn.harness.validate import run_validation

SPEC = edgecnn.VariantSpec.create("mobilenet_v2", alpha=0.35, resolution=96)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("validate") / SPEC.id
    run_export(ExportRequest(SPEC, parse_formats("onnx,tflite,coreml"), calib_count=16, out=root,
                             latency=LatencyOptions(threads=(1, 2), budget_s=0.2)))
    return root


@pytest.fixture
def copy_of(exported, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(exported, target)
    return target


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "edgecnn", "validate", *map(str, args)], capture_output=True,
                          text=True, timeout=600, cwd=cwd)


def test_export_writes_the_validation_report_of_every_artifact(exported):
    report = json.loads((exported / "validation" / "report.json").read_text())
    manifest = json.loads((exported / "manifest.json").read_text())
    assert report["schema"] == REPORT_SCHEMA and report["passed"] is True
    assert report["manifest_sha256"] == sha256_of(exported / "manifest.json")
    assert [a["path"] for a in report["artifacts"]] == [a["path"] for a in manifest["artifacts"]]
    assert report["parity_images"]["count"] == 16
    by_path = {a["path"]: a for a in report["artifacts"]}
    assert by_path["model.onnx"]["status"] == "passed" and by_path["model.onnx"]["parity"]["max_rel_error"] < 1e-4
    assert by_path["model.mlpackage"]["status"] == "passed"  # the MIL executor ran the saved program
    assert by_path["model_int8.tflite"]["status"] == "reported"  # measured, not gated: untrained weights
    markdown = (exported / "validation" / "report.md").read_text()
    assert all(f"| {a['path']} |" in markdown for a in manifest["artifacts"])
    assert (exported / "validation" / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_export_validation_includes_latency_at_each_thread_count(exported):
    report = json.loads((exported / "validation" / "report.json").read_text())
    latency = report["latency"]
    assert set(latency["threads"]) == {"1", "2"}
    timed = ["pytorch eager (fp32)", "model.onnx", "model_fp32.tflite", "model_int8.tflite"]
    for timings in latency["threads"].values():
        assert list(timings)[:4] == timed
        assert all(t["runs"] >= 10 and 0 < t["min_ms"] <= t["median_ms"] <= t["p90_ms"] for t in timings.values())
    # Core ML is checked numerically here but timed only where it runs (Apple platforms)
    apple = platform.system() == "Darwin"
    assert set(latency["not_measured"]) == (set() if apple else {"model.mlpackage", "model_w8.mlpackage"})
    assert set(latency["load_and_memory"]) >= set(timed[1:])
    assert "## Latency" in (exported / "validation" / "report.md").read_text()
    assert (exported / "validation" / "latency.png").read_bytes()[:4] == b"\x89PNG"


def test_the_rebuilt_reference_is_the_exported_model(exported):
    """An untrained export's reference is rebuilt from seed and calibration images: it must be the same net."""
    manifest = open_export(exported)
    model = reference_model(manifest, exported)
    images = load_calibration(SPEC.resolution, 4, progress=False).images
    from edgecnn.formats.onnx import Runner

    onnx_out = Runner(exported / "model.onnx", manifest.artifacts[0]).run(images)
    with torch.no_grad():
        ours = model(torch.from_numpy(images).permute(0, 3, 1, 2).float()).numpy()
    assert np.abs(onnx_out - ours).max() < 1e-4 * np.abs(ours).max()
    # from the statistics the export kept, not re-estimated: the same net as re-estimation gives
    assert manifest.batchnorm_statistics.path == "reference_batchnorm.pt"
    again = reference_model(dataclasses.replace(manifest, batchnorm_statistics=None), exported)
    with torch.no_grad():
        again_out = again(torch.from_numpy(images).permute(0, 3, 1, 2).float())
    torch.testing.assert_close(again_out, torch.from_numpy(ours), rtol=1e-5, atol=1e-5 * float(np.abs(ours).max()))


def test_analysis_commands_start_from_the_export_without_re_estimating(copy_of):
    """classify on an untrained export: no BatchNorm re-estimation, and no note about --weights, which it does not
    take; a changed statistics file is refused by the gate."""
    photo = load_calibration(SPEC.resolution, 1, progress=False)
    Image.fromarray(photo.images[0]).save(copy_of / "photo.png")
    result = subprocess.run([sys.executable, "-m", "edgecnn", "classify", str(copy_of), str(copy_of / "photo.png")],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "--weights" not in result.stderr and "BatchNorm statistics re-estimated" not in result.stderr
    assert "model_int8.tflite" in result.stdout
    statistics = copy_of / "reference_batchnorm.pt"
    statistics.write_bytes(statistics.read_bytes()[:-8] + bytes(8))
    with pytest.raises(UsageError, match="reference_batchnorm.pt has changed since export"):
        open_export(copy_of)


def test_accuracy_on_labelled_folders_and_parity_on_the_users_photos(exported, copy_of, tmp_path, capfd):
    """Labels chosen as PyTorch's own top-1: PyTorch scores 100%, fp32 artifacts too, int8 loses its disagreements."""
    images = load_calibration(SPEC.resolution, 12, progress=False).images
    manifest = open_export(copy_of)
    seen = np.stack([preprocess(Image.fromarray(image), SPEC.resolution) for image in images])  # as validate sees them
    with torch.no_grad():
        predicted = reference_model(manifest, copy_of)(torch.from_numpy(seen).permute(0, 3, 1, 2).float()).argmax(1)
    labelled = tmp_path / "labelled"
    for i, (image, cls) in enumerate(zip(images, predicted.tolist())):
        folder = labelled / f"class_{cls}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{i}.png")
    photos = tmp_path / "photos"
    photos.mkdir()
    for i, image in enumerate(images[:5]):
        Image.fromarray(image).save(photos / f"p{i}.jpg", quality=95)

    own = (copy_of / "validation" / "report.json").read_bytes()
    with pytest.raises(UsageError, match="holds the export's validation report: give out= a folder of its own"):
        run_validation(copy_of, images=photos, count=5, labels_dir=labelled, latency=None)
    second = tmp_path / "second-look"
    report = run_validation(copy_of, images=photos, count=5, labels_dir=labelled, latency=None, out=second)
    assert (copy_of / "validation" / "report.json").read_bytes() == own  # the export's own report, untouched
    # the converters' and runtimes' own lines went to the report's log, edgecnn's stayed on the terminal
    terminal = capfd.readouterr().err.splitlines()
    assert terminal and all(line.startswith(("[edgecnn]", "\r")) or not line.strip() for line in terminal), terminal
    assert (second / "validate.log").is_file()
    assert report.parity_images.count == 5 and report.parity_images.source == str(photos)
    assert report.labelled.pytorch_fp32.top1 == 1.0
    assert report.labelled.images == 12
    by_path = {a.path: a for a in report.artifacts}
    assert by_path["model.onnx"].accuracy.top1 == 1.0 and by_path["model.onnx"].accuracy.top1_drop == 0
    int8 = by_path["model_int8.tflite"].accuracy
    assert int8.top1_drop == pytest.approx(1.0 - int8.top1)
    written = json.loads((second / "report.json").read_text())
    assert written["labelled"]["classes"] == {f"class_{c}": c for c in set(predicted.tolist())}
    assert "## Accuracy on 12 labelled images" in (second / "report.md").read_text()


def test_a_corrupted_weight_fails_validation_naming_artifact_and_metric(copy_of):
    proto = onnx.load(copy_of / "model.onnx")
    victim = max(proto.graph.initializer, key=lambda t: np.prod(t.dims) if len(t.dims) == 4 else 0)
    weights = numpy_helper.to_array(victim).copy()
    weights.reshape(-1)[::7] *= -1.0
    victim.CopyFrom(numpy_helper.from_array(weights, victim.name))
    onnx.save(proto, copy_of / "model.onnx")
    manifest = json.loads((copy_of / "manifest.json").read_text())
    manifest["artifacts"][0]["sha256"] = sha256_of(copy_of / "model.onnx")  # a consistent, wrong artifact
    (copy_of / "manifest.json").write_text(json.dumps(manifest))

    result = cli(copy_of, "--count", "4", "--no-latency")
    assert result.returncode == 1, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("edgecnn: validation failed: model.onnx (fp32): max relative error"), last
    assert "Traceback" not in result.stderr
    report = json.loads((copy_of / "validation" / "report.json").read_text())
    assert report["passed"] is False and report["artifacts"][0]["status"] == "failed"


def test_trained_weights_are_reloaded_from_the_recorded_file(tmp_path):
    spec = edgecnn.VariantSpec.create("resnet18", alpha=0.25, resolution=64)
    model = edgecnn.create_model("resnet18", alpha=0.25)
    weights = tmp_path / "resnet18.pt"
    torch.save(model.state_dict(), weights)
    root = tmp_path / "export"
    run_export(ExportRequest(spec, parse_formats("onnx"), weights=weights, calib_count=4, out=root, validate=False))
    assert not (root / "validation").exists()  # --no-validate: the self-check only
    report = run_validation(root, count=4, latency=None)
    assert report.weights.trained and report.artifacts[0].status is CheckStatus.PASSED
    torch.save({k: v + 1 for k, v in model.state_dict().items()}, weights)
    with pytest.raises(UsageError, match="has changed since export"):
        run_validation(root, count=4, latency=None, replace=True)


def _edit_manifest(root, change):
    manifest = json.loads((root / "manifest.json").read_text())
    change(manifest)
    (root / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("case, message", [
    ("not_a_folder", "model_int8.tflite is a file; edgecnn reads an export folder (holding manifest.json): give the "
                     "export folder it is in, "),
    ("missing_folder", "export folder not found"),
    ("no_manifest", "is not an edgecnn export: it has no manifest.json"),
    ("broken_manifest", "is not valid JSON"),
    ("other_schema", f"has schema 'edgecnn.manifest/0'; this edgecnn reads '{MANIFEST_SCHEMA}'"),
    ("missing_field", f"does not follow {MANIFEST_SCHEMA}: artifacts.0.sha256: Field required"),
    ("wrong_type", f"does not follow {MANIFEST_SCHEMA}: resolution: Input should be a valid integer"),
    ("changed_artifact", "model_int8.tflite has changed since export: its sha256 no longer matches"),
    ("empty_images", "no images"),
    ("unreadable_images", "no readable image in "),
    ("unknown_class", "class folder 'tabby' is neither a label of this export nor a class index"),
])
def test_bad_input_gets_one_line_and_no_traceback(copy_of, tmp_path, case, message):
    args = [copy_of]
    if case == "not_a_folder":
        args = [copy_of / "model_int8.tflite"]
    elif case == "missing_folder":
        args = [tmp_path / "nowhere"]
    elif case == "no_manifest":
        (copy_of / "manifest.json").unlink()
    elif case == "broken_manifest":
        (copy_of / "manifest.json").write_text("{ half")
    elif case == "other_schema":
        _edit_manifest(copy_of, lambda m: m.update(schema="edgecnn.manifest/0"))
    elif case == "missing_field":
        _edit_manifest(copy_of, lambda m: m["artifacts"][0].pop("sha256"))
    elif case == "wrong_type":
        _edit_manifest(copy_of, lambda m: m.update(resolution="96"))
    elif case == "changed_artifact":
        data = bytearray((copy_of / "model_int8.tflite").read_bytes())
        data[-100] ^= 0xFF
        (copy_of / "model_int8.tflite").write_bytes(bytes(data))
    elif case == "empty_images":
        (tmp_path / "empty").mkdir()
        args += ["--images", tmp_path / "empty"]
    elif case == "unreadable_images":
        (tmp_path / "bad").mkdir()
        (tmp_path / "bad" / "x.png").write_bytes(b"not a png")
        args += ["--images", tmp_path / "bad"]
    elif case == "unknown_class":
        (tmp_path / "labelled" / "tabby").mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp_path / "labelled" / "tabby" / "a.png")
        args += ["--labels-dir", tmp_path / "labelled"]
    before = sorted(p.name for p in copy_of.rglob("*"))
    result = cli(*args)
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("edgecnn")]
    assert len(errors) == 1 and message in errors[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in copy_of.rglob("*")) == before  # the earlier report is untouched



def test_fp32_limits_widen_only_by_pytorchs_own_fp32_error():
    from edgecnn.harness.parity import Limits, Parity, limits, violations

    exact = Parity(4, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0)
    chaotic = Parity(4, 1.0, 0.05, 0.99, 0.98, 0.75, 0.75)
    assert limits("fp32", exact) == limits("fp32") == Limits(max_rel_error=1e-4, min_cosine=0.9999,
                                                             min_top1_agreement=1.0)
    wide = limits("fp32", chaotic)
    assert wide.max_rel_error == pytest.approx(0.2) and wide.min_cosine == pytest.approx(0.92)
    assert wide.min_top1_agreement == pytest.approx(0.0)
    artifact = Parity(4, 0.5, 0.01, 0.99, 0.97, 0.75, 0.75)
    assert violations(artifact, "fp32", fp32_noise=exact) != [] and violations(artifact, "fp32", fp32_noise=chaotic) == []
    assert limits("int8", chaotic) == limits("int8")  # quantized limits do not move


# --- the manifest gate: an export folder is untrusted input -------------------------------------------------

OUTSIDE = "outside.tflite"


def _point_at_outside(root, tmp_path, how):
    """Make the manifest name a valid int8 model outside the folder, with its correct sha256."""
    outside = tmp_path / OUTSIDE
    shutil.copyfile(root / "model_int8.tflite", outside)
    digest = sha256_of(outside)
    if how == "parent":
        path = f"../{OUTSIDE}"
    elif how == "absolute":
        path = str(outside)
    else:  # a symlink inside the folder that leads out
        (root / "link.tflite").symlink_to(outside)
        path = "link.tflite"

    def change(m):
        entry = next(a for a in m["artifacts"] if a["path"] == "model_int8.tflite")
        entry.update(path=path, sha256=digest)
    _edit_manifest(root, change)


@pytest.mark.parametrize("command", ["validate", "bench", "classify", "android-assets"])
@pytest.mark.parametrize("how, message", [
    ("parent", "leads out of the export folder"),
    ("absolute", "is not a relative path inside the export"),
    ("symlink", "is a symlink that leads out of the export folder"),
])
def test_every_reader_refuses_paths_that_leave_the_export_before_any_work(copy_of, tmp_path, command, how,
                                                                           message):
    """Even when the file outside is a valid artifact whose sha256 matches the manifest."""
    _point_at_outside(copy_of, tmp_path, how)
    assets = tmp_path / "assets"
    args = {"validate": ["validate", copy_of, "--no-latency"], "bench": ["bench", copy_of],
            "classify": ["classify", copy_of, "--bundled-photos"],
            "android-assets": ["android-assets", "--variants", f"{SPEC.model}:0.35:96", "--assets", assets,
                               "--export-root", copy_of.parent]}[command]
    if command == "android-assets":  # the app's exports are found by variant id under --export-root
        copy_of.rename(copy_of.parent / SPEC.id)
        copy_of = copy_of.parent / SPEC.id
    before = sorted(str(p) for p in copy_of.rglob("*"))
    result = subprocess.run([sys.executable, "-m", "edgecnn", *map(str, args)], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and lines[0].startswith("edgecnn: error:"), result.stderr[-2000:]
    assert sorted(str(p) for p in copy_of.rglob("*")) == before and not assets.exists()


@pytest.mark.parametrize("variant", ["../escape", "a/b", ".hidden", "", "x" * 200])
def test_an_unsafe_variant_id_is_refused(copy_of, variant):
    _edit_manifest(copy_of, lambda m: m.update(variant=variant))
    with pytest.raises(UsageError, match="is not a safe file name"):
        open_export(copy_of)


def test_labels_outside_the_folder_are_refused(copy_of, tmp_path):
    (tmp_path / "labels.txt").write_text("x\n")
    _edit_manifest(copy_of, lambda m: m.update(labels="../labels.txt"))
    with pytest.raises(UsageError, match="labels file '../labels.txt' leads out of the export folder"):
        open_export(copy_of)


def test_a_symlink_inside_a_core_ml_package_that_leads_out_is_refused(copy_of, tmp_path):
    (tmp_path / "secret").write_text("not yours")
    (copy_of / "model.mlpackage" / "Data" / "secret").symlink_to(tmp_path / "secret")
    with pytest.raises(UsageError, match="holds a symlink that leads out"):
        open_export(copy_of)


def test_the_gate_accepts_the_export_as_written(exported):
    manifest = open_export(exported)
    assert manifest.schema == MANIFEST_SCHEMA and manifest.variant == SPEC.id
    assert [a.path for a in manifest.artifacts] == ["model.onnx", "model_fp32.tflite", "model_int8.tflite",
                                                    "model.mlpackage", "model_w8.mlpackage"]
    assert manifest.parity["model.onnx"].status is CheckStatus.PASSED
