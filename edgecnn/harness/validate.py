"""The validation harness: every artifact of an export against PyTorch fp32, and on labelled photos.

An export folder is read through its manifest (schema and every artifact's sha256 checked first), the
PyTorch reference is rebuilt from what the manifest records (the weights file, or the seeded random
init with BatchNorm statistics from the recorded calibration images), and each artifact runs through
its format's runner on the same preprocessed images. Parity limits come from `parity.THRESHOLDS`.
"""
from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from edgecnn.data.calibration import find_images, load_calibration
from edgecnn.util.errors import ExportError, UsageError, ValidationFailed
from edgecnn.formats import FORMATS, sha256_of
from edgecnn.util.interrupts import checkpoint
from edgecnn.harness.latency import LatencyOptions, measure_artifacts
from edgecnn.harness.parity import FP32_NOISE_FACTOR, Parity, compare, distinct_outputs, is_gated, limits, violations
from edgecnn.data.preprocess import CROP_FRACTION, load_image, preprocess

MANIFEST_SCHEMA = "edgecnn.manifest/1"
REPORT_SCHEMA = "edgecnn.report/1"
DEFAULT_IMAGE_COUNT = 16
VALIDATION_FOLDER = "validation"  # inside the export folder
BATCH = 8  # images per runner call: small enough to show progress, large enough to keep runners busy


def open_export(root: Path) -> dict:
    """The manifest of an export folder, after checking that every artifact is the one it lists."""
    if not root.exists():
        raise UsageError(f"export folder not found: {root}")
    if not root.is_dir():
        raise UsageError(f"not a folder: {root}")
    path = root / "manifest.json"
    if not path.is_file():
        raise UsageError(f"{root} is not an edgecnn export: it has no manifest.json")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise UsageError(f"{path} is not valid JSON ({err.__class__.__name__})") from None
    schema = manifest.get("schema") if isinstance(manifest, dict) else None
    if schema != MANIFEST_SCHEMA:
        raise UsageError(f"{path} has schema {schema!r}; this edgecnn reads {MANIFEST_SCHEMA!r} (re-export it)")
    for artifact in manifest["artifacts"]:
        file = root / artifact["path"]
        if not file.exists():
            raise UsageError(f"{file} is listed in the manifest but missing")
        if sha256_of(file) != artifact["sha256"]:
            raise UsageError(f"{file} has changed since export: its sha256 no longer matches the manifest")
    return manifest


def reference_model(manifest: dict) -> torch.nn.Module:
    """The raw-RGB PyTorch model the export was made from, rebuilt from the manifest."""
    from edgecnn.export.pipeline import prepare_model
    from edgecnn.zoo.spec import VariantSpec

    weights = manifest["weights"]
    spec = VariantSpec.create(manifest["model"], alpha=manifest["alpha"], resolution=manifest["resolution"],
                              num_classes=manifest["num_classes"])
    if weights["trained"]:
        from edgecnn.weights.sources import resolve

        source = resolve(weights["path"] if weights["kind"] == "file" else weights["name"], manifest["model"],
                         download=False)
        if not source.path.is_file():
            raise UsageError(f"the weights this export was made from are gone: {source.path}")
        if source.sha256() != weights["sha256"]:
            raise UsageError(f"{source.path} has changed since export: its sha256 no longer matches the manifest")
        model, _ = prepare_model(spec, source, np.empty((0,)))
        return model
    recorded = manifest["calibration"]
    folder = Path(recorded["folder"]) if recorded.get("folder") else None
    calibration = load_calibration(manifest["resolution"], recorded["count"], folder, progress=False)
    if calibration.sha256 != recorded["sha256"]:
        raise UsageError("the calibration images this untrained export re-estimated BatchNorm on have changed; "
                         "its PyTorch reference cannot be rebuilt")
    model, _ = prepare_model(spec, None, calibration.images)
    return model


def crop_fraction(manifest: dict) -> float:
    return float(manifest["preprocessing"]["crop_fraction"])


def parity_images(manifest: dict, count: int, folder: Optional[Path] = None) -> tuple[np.ndarray, str]:
    """The images every artifact is compared on: a user's folder, else the test split of the dataset the
    model was trained on, else the bundled photos."""
    dataset = manifest.get("dataset")
    if folder is None and dataset is not None:
        from edgecnn.data.datasets import get_dataset

        data = get_dataset(dataset)
        images, _ = data.model_inputs("test", manifest["resolution"], range(count), crop_fraction(manifest),
                                      progress=False)
        return images, f"the first {count} images of the " + data.describe("test")
    photos = load_calibration(manifest["resolution"], count, folder, progress=False,
                              crop_fraction=crop_fraction(manifest))
    return photos.images, photos.source


@dataclass
class LabelledSet:
    images: np.ndarray  # (N, R, R, 3) uint8
    targets: np.ndarray  # (N,) class indices
    classes: dict[str, int]  # folder name -> class index
    folder: str


def load_labelled(folder: Path, labels: list[str], resolution: int, label_map: Optional[Path] = None,
                  crop: float = CROP_FRACTION) -> LabelledSet:
    """One subfolder per class, named by a label of the export, by a class index, or through --label-map."""
    if not folder.is_dir():
        raise UsageError(f"labelled image folder not found: {folder}")
    mapping = _read_label_map(label_map, labels) if label_map is not None else {}
    subfolders = sorted(d for d in folder.iterdir() if d.is_dir())
    if not subfolders:
        raise UsageError(f"{folder} has no class subfolders (one folder of images per class)")
    by_name = {label: i for i, label in enumerate(labels)}
    classes, paths, targets = {}, [], []
    for sub in subfolders:
        if sub.name in mapping:
            index = mapping[sub.name]
        elif sub.name in by_name:
            index = by_name[sub.name]
        elif sub.name.isdigit() and int(sub.name) < len(labels):
            index = int(sub.name)
        else:
            raise UsageError(f"class folder {sub.name!r} is neither a label of this export nor a class index "
                             f"below {len(labels)}; pass --label-map")
        classes[sub.name] = index
        found = find_images(sub)
        paths += found
        targets += [index] * len(found)
    images = []
    for i, path in enumerate(paths):
        checkpoint()
        images.append(preprocess(load_image(path), resolution, crop))
        if (i + 1) % 50 == 0 or i + 1 == len(paths):
            print(f"  labelled images {i + 1}/{len(paths)}", file=sys.stderr)
    return LabelledSet(np.stack(images), np.asarray(targets), classes, str(folder))


def check_dataset_labels(name: str, labels: list[str]):
    from edgecnn.data.datasets import get_dataset

    dataset = get_dataset(name)
    if list(dataset.classes) != labels:
        raise UsageError(f"this export's {len(labels)} labels are not {name}'s classes "
                         f"({', '.join(dataset.classes[:3])}, ...): it was not trained on {name}")
    return dataset


def load_dataset_labelled(name: str, labels: list[str], resolution: int, crop: float,
                          count: Optional[int] = None) -> LabelledSet:
    """The test split of a known dataset (all of it, or its first `count` images) as labelled input."""
    dataset = check_dataset_labels(name, labels)
    if count is not None and count < 1:
        raise UsageError(f"--dataset-count must be at least 1, got {count}")
    total = len(dataset.load("test")[1])
    indices = range(min(count, total)) if count is not None else None
    images, targets = dataset.model_inputs("test", resolution, indices, crop)
    return LabelledSet(images, targets, {c: i for i, c in enumerate(dataset.classes)}, dataset.describe("test"))


def _read_label_map(path: Path, labels: list[str]) -> dict[str, int]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"label map not found: {path}") from None
    except (ValueError, UnicodeDecodeError):
        raise UsageError(f"{path} is not a JSON object of folder name -> label or class index") from None
    if not isinstance(raw, dict):
        raise UsageError(f"{path} is not a JSON object of folder name -> label or class index")
    mapping = {}
    for name, value in raw.items():
        if isinstance(value, int) and 0 <= value < len(labels):
            mapping[name] = value
        elif isinstance(value, str) and value in labels:
            mapping[name] = labels.index(value)
        else:
            raise UsageError(f"{path}: {name!r} maps to {value!r}, which is not a label or class index of this export")
    return mapping


@dataclass
class ArtifactCheck:
    record: dict
    status: str  # passed | failed | reported (not gated: untrained weights) | not run
    parity: Optional[Parity] = None
    problems: list[str] = field(default_factory=list)
    reason: str = ""
    logits: Optional[np.ndarray] = None
    labelled_logits: Optional[np.ndarray] = None

    @property
    def name(self) -> str:
        return self.record["path"]


def run_artifact(root: Path, record: dict, images: np.ndarray, progress: bool = True,
                 batch: int = BATCH) -> np.ndarray:
    runner = FORMATS[record["format"]].load().Runner(root / record["path"], record)
    outputs = []
    for start in range(0, len(images), batch):
        checkpoint()
        outputs.append(runner.run(images[start:start + batch]))
        if progress:
            print(f"  {record['path']}: {min(start + batch, len(images))}/{len(images)} images", file=sys.stderr)
    return np.concatenate(outputs)


def labelled_batch(count: int) -> int:
    """Large labelled sets run in bigger batches (runners that take a batch amortise their overhead),
    still reporting progress about twenty times."""
    return max(BATCH, count // 20)


def pytorch_logits(model: torch.nn.Module, images: np.ndarray, with_noise: bool = True,
                   batch: int = BATCH) -> tuple[np.ndarray, Optional[Parity]]:
    """fp32 logits, and how far they are from float64 (what fp32 arithmetic itself costs on this model)."""
    import copy

    x = torch.from_numpy(images).permute(0, 3, 1, 2)
    with torch.no_grad():
        expected = torch.cat([model(b.float()) for b in x.split(batch)]).numpy()
        if not with_noise:
            return expected, None
        exact = copy.deepcopy(model).double()
        noise = compare(expected, torch.cat([exact(b.double()) for b in x.split(BATCH)]).numpy())
    return expected, noise


def check_artifacts(model: torch.nn.Module, manifest: dict, root: Path, images: np.ndarray,
                    labelled: Optional[LabelledSet] = None, progress: bool = True) -> dict:
    """Run every artifact; returns the report body (without writing anything)."""
    trained = manifest["weights"]["trained"]
    expected, noise = pytorch_logits(model, images)
    if not distinct_outputs(expected):
        raise ExportError("PyTorch gives the same output for different images: parity would prove nothing")
    reference_labelled = None
    if labelled is not None:
        reference_labelled = pytorch_logits(model, labelled.images, with_noise=False,
                                            batch=labelled_batch(len(labelled.images)))[0]
    checks = []
    for record in manifest["artifacts"]:
        try:
            logits = run_artifact(root, record, images, progress)
        except RuntimeError as err:  # a runtime this machine lacks (Core ML predicts only on macOS)
            checks.append(ArtifactCheck(record, "not run", reason=str(err)))
            continue
        parity = compare(logits, expected)
        problems = violations(parity, record["precision"], trained, noise)
        status = ("failed" if problems else "passed") if is_gated(record["precision"], trained) \
            else "reported (not gated: untrained weights)"
        check = ArtifactCheck(record, status, parity, problems, logits=logits)
        if labelled is not None:
            check.labelled_logits = run_artifact(root, record, labelled.images, progress,
                                                 labelled_batch(len(labelled.images)))
        checks.append(check)
    return _report(manifest, root, images, expected, noise, checks, labelled, reference_labelled)


def top_k_accuracy(logits: np.ndarray, targets: np.ndarray, k: int) -> float:
    k = min(k, logits.shape[1])
    top = np.argsort(-logits, axis=1)[:, :k]
    return float((top == targets[:, None]).any(axis=1).mean())


def _accuracy(logits: np.ndarray, targets: np.ndarray, reference: Optional[dict] = None) -> dict:
    result = {"top1": top_k_accuracy(logits, targets, 1), "top5": top_k_accuracy(logits, targets, 5)}
    if reference is not None:
        result["top1_drop"] = reference["top1"] - result["top1"]
        result["top5_drop"] = reference["top5"] - result["top5"]
    return {k: round(v, 6) for k, v in result.items()}


def _report(manifest: dict, root: Path, images: np.ndarray, expected: np.ndarray, noise: Parity,
            checks: list[ArtifactCheck], labelled: Optional[LabelledSet],
            reference_labelled: Optional[np.ndarray]) -> dict:
    from edgecnn.export.pipeline import tool_versions

    reference_accuracy = None
    if labelled is not None:
        reference_accuracy = _accuracy(reference_labelled, labelled.targets)
    artifacts = []
    for check in checks:
        entry = {"path": check.name, "format": check.record["format"], "precision": check.record["precision"],
                 "status": check.status}
        if check.parity is not None:
            entry["parity"] = check.parity.to_dict()
            entry["limits"] = limits(check.record["precision"], noise)
            entry["problems"] = check.problems
        else:
            entry["reason"] = check.reason
        if check.labelled_logits is not None:
            entry["accuracy"] = _accuracy(check.labelled_logits, labelled.targets, reference_accuracy)
        artifacts.append(entry)
    return {
        "schema": REPORT_SCHEMA,
        "variant": manifest["variant"],
        "export": str(root),
        "manifest_sha256": (hashlib.sha256((root / "manifest.json").read_bytes()).hexdigest()
                            if (root / "manifest.json").is_file() else None),
        "weights": manifest["weights"],
        "parity_images": {"count": int(len(images)),
                          "sha256": hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest()},
        "pytorch_fp32_vs_float64": noise.to_dict(),
        "fp32_limit_note": f"fp32 limits are the table's, widened to {FP32_NOISE_FACTOR:g} x PyTorch fp32's own "
                           "deviation from float64 where that is larger",
        "labelled": None if labelled is None else {
            "folder": labelled.folder, "images": int(len(labelled.targets)), "classes": labelled.classes,
            "pytorch_fp32": reference_accuracy},
        "artifacts": artifacts,
        "latency": None,
        "passed": all(c.status != "failed" for c in checks),
        "created_with": tool_versions(),
    }


def failures(report: dict) -> list[str]:
    return [f"{a['path']} ({a['precision']}): " + "; ".join(a["problems"])
            for a in report["artifacts"] if a["status"] == "failed"]


def run_validation(export_dir: Path, images: Optional[Path] = None, count: int = DEFAULT_IMAGE_COUNT,
                   labels_dir: Optional[Path] = None, label_map: Optional[Path] = None,
                   out: Optional[Path] = None, latency: Optional[LatencyOptions] = LatencyOptions(),
                   dataset: Optional[str] = None, dataset_count: Optional[int] = None) -> dict:
    """`edgecnn validate`: check, run, time, report (written even when a limit is broken), then fail if one was."""
    from edgecnn.util.atomic import check_writable
    from edgecnn.util.interrupts import deferred_interrupts
    from edgecnn.harness.report import console_table, latency_table, write_report

    with deferred_interrupts():
        if count < 1:
            raise UsageError(f"--count must be at least 1, got {count}")
        manifest = open_export(export_dir)
        out = out if out is not None else export_dir / VALIDATION_FOLDER
        check_writable(out.parent)
        if images is not None:
            find_images(images)
        labels_file = export_dir / manifest["labels"]
        if not labels_file.is_file():
            raise UsageError(f"{labels_file} is listed in the manifest but missing")
        labels = labels_file.read_text(encoding="utf-8").splitlines()
        if label_map is not None and labels_dir is None:
            raise UsageError("--label-map needs --labels-dir")
        if dataset is not None and labels_dir is not None:
            raise UsageError("give --labels-dir or --dataset, not both")
        if dataset_count is not None and dataset is None:
            raise UsageError("--dataset-count needs --dataset")
        if dataset is not None:
            check_dataset_labels(dataset, labels)

        print(f"[edgecnn] {manifest['variant']}: rebuilding the PyTorch reference", file=sys.stderr)
        model = reference_model(manifest)
        photos, origin = parity_images(manifest, count, images)
        labelled = None
        if labels_dir is not None:
            labelled = load_labelled(labels_dir, labels, manifest["resolution"], label_map, crop_fraction(manifest))
        if dataset is not None:
            labelled = load_dataset_labelled(dataset, labels, manifest["resolution"], crop_fraction(manifest),
                                             dataset_count)
        print(f"[edgecnn] {manifest['variant']}: {len(manifest['artifacts'])} artifacts on {count} images "
              f"({origin})" + (f" and {len(labelled.targets)} labelled images" if labelled else ""),
              file=sys.stderr)
        report = check_artifacts(model, manifest, export_dir, photos, labelled)
        report["parity_images"]["source"] = origin
        if latency is not None:
            print(f"[edgecnn] {manifest['variant']}: latency", file=sys.stderr)
            report["latency"] = measure_artifacts(model, manifest, export_dir, photos[0], latency)
        checkpoint()
        write_report(report, out)
    print(console_table(report))
    if report.get("latency"):
        print(latency_table(report["latency"]))
    print(f"report: {out / 'report.md'} (.json, .png)")
    problems = failures(report)
    if problems:
        raise ValidationFailed(f"{problems[0]} (report: {out / 'report.md'})")
    return report
