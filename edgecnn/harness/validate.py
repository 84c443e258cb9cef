"""`edgecnn validate`: every artifact of an export against PyTorch fp32, on photos and labelled images.

An export folder is read through the manifest gate (`edgecnn.schema.manifest.open_export`). The
PyTorch reference is rebuilt from what the manifest records (`edgecnn.weights.reference`), and each
artifact runs through its format's runner on the same preprocessed images (`edgecnn.harness.checks`).
Parity limits come from `edgecnn.harness.parity.THRESHOLDS`. The report is written even when a limit is
broken, and then the command fails.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Callable, ContextManager, Optional

from edgecnn.data.calibration import find_images
from edgecnn.harness.checks import check_artifacts
from edgecnn.harness.images import (
    DEFAULT_IMAGE_COUNT,
    check_dataset_labels,
    load_dataset_labelled,
    load_labelled,
    parity_images,
)
from edgecnn.harness.latency import LatencyOptions, measure_artifacts
from edgecnn.harness.report import VALIDATION_FOLDER, console_table, latency_table, write_report
from edgecnn.schema.manifest import Manifest, open_export, read_labels
from edgecnn.schema.report import ValidationReport
from edgecnn.util import console
from edgecnn.util.atomic import check_writable
from edgecnn.util.errors import UsageError, ValidationFailed
from edgecnn.util.interrupts import checkpoint, deferred_interrupts
from edgecnn.weights.reference import reference_model

DEFAULT_LATENCY = LatencyOptions()


def run_validation(
    export_dir: Path,
    images: Optional[Path] = None,
    count: int = DEFAULT_IMAGE_COUNT,
    labels_dir: Optional[Path] = None,
    label_map: Optional[Path] = None,
    out: Optional[Path] = None,
    latency: Optional[LatencyOptions] = DEFAULT_LATENCY,
    dataset: Optional[str] = None,
    dataset_count: Optional[int] = None,
    timing_slot: Callable[[], ContextManager] = nullcontext,
    replace: bool = False,
    verbose: bool = False,
) -> ValidationReport:
    """Check, run, time, report (written even when a limit is broken), then fail if one was.

    `out`: the report folder; by default the export's own `validation/`, which is replaced only with `replace`
    (an export's report from export time is not overwritten by a second look from Python). Third-party output
    goes to `out/validate.log`, or shows live with `verbose`. `timing_slot`: held while latency is measured, so
    that a caller running several validations at once keeps their timing phases apart
    (`edgecnn.sweeps.variants`)."""
    export_dir = Path(export_dir)
    with deferred_interrupts():
        if count < 1:
            raise UsageError(f"--count must be at least 1, got {count}")
        if label_map is not None and labels_dir is None:
            raise UsageError("--label-map needs --labels-dir")
        if dataset is not None and labels_dir is not None:
            raise UsageError("give --labels-dir or --dataset, not both")
        if dataset_count is not None and dataset is None:
            raise UsageError("--dataset-count needs --dataset")
        manifest = open_export(export_dir)
        if out is None and (export_dir / VALIDATION_FOLDER).exists() and not replace:
            raise UsageError(
                f"{export_dir / VALIDATION_FOLDER} holds the export's validation report: give out= a folder of its "
                "own, or replace=True to replace it"
            )
        out = out if out is not None else export_dir / VALIDATION_FOLDER
        check_writable(out.parent)
        with console.third_party_into(out, "validate.log", verbose):
            report = _validate(
                export_dir,
                manifest,
                images,
                count,
                labels_dir,
                label_map,
                out,
                latency,
                dataset,
                dataset_count,
                timing_slot,
            )
    failed = report.failures()
    if failed:
        raise ValidationFailed(f"{failed[0].failure_line()} (report: {out / 'report.md'})", report)
    return report


def _validate(
    export_dir: Path,
    manifest: Manifest,
    images: Optional[Path],
    count: int,
    labels_dir: Optional[Path],
    label_map: Optional[Path],
    out: Path,
    latency: Optional[LatencyOptions],
    dataset: Optional[str],
    dataset_count: Optional[int],
    timing_slot: Callable[[], ContextManager],
) -> ValidationReport:
    if images is not None:
        find_images(images)
    labels = read_labels(export_dir, manifest)
    if dataset is not None:
        check_dataset_labels(dataset, labels)

    with console.step(f"{manifest.variant}: PyTorch reference rebuilt"):
        model = reference_model(manifest, export_dir)
    photos, origin = parity_images(manifest, count, images)
    labelled = None
    if labels_dir is not None:
        labelled = load_labelled(labels_dir, labels, manifest.resolution, label_map, manifest.crop_fraction)
    if dataset is not None:
        labelled = load_dataset_labelled(dataset, labels, manifest.resolution, manifest.crop_fraction, dataset_count)
    what = f"{len(manifest.artifacts)} artifacts on {count} images ({origin})" + (
        f" and {len(labelled.targets)} labelled images" if labelled else ""
    )
    with console.step(f"{manifest.variant}: validated {what}"):
        report = check_artifacts(model, manifest, export_dir, photos, labelled, images_source=origin)
    if latency is not None:
        with timing_slot(), console.step(f"{manifest.variant}: latency"):
            report.latency = measure_artifacts(model, manifest, export_dir, photos[0], latency)
    checkpoint()
    write_report(report, out)
    return report


def summary(report: ValidationReport, out: Path) -> str:
    """What `edgecnn validate` prints: the parity table, the latency table, where the report is."""
    parts = [console_table(report)]
    if report.latency is not None:
        parts.append(latency_table(report.latency))
    return "\n".join(parts + [f"report: {out / 'report.md'} (.json, .png)"])
