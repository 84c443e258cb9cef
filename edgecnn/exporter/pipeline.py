"""`edgecnn export`: spec -> model (+weights) -> artifacts -> check against PyTorch -> manifest, as named steps.

Everything is written into a hidden sibling folder under a lock on the target's name (`atomic_folder`).
Only when every artifact exists, has passed its check, and the manifest is written does the folder take
the variant's name, replacing an older export only with --force. A failure, an interrupt or a full disk
leaves what existed before untouched. Converters' own output goes to `export.log` in the folder
(`--verbose` shows it live).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from edgecnn.data.calibration import (
    CalibrationSet,
    TuningSet,
    find_images,
    load_calibration,
    load_dataset_calibration,
    load_repair_set,
)
from edgecnn.data.datasets import get_dataset
from edgecnn.data.preprocess import CROP_FRACTION
from edgecnn.exporter.conversion import Converted, convert_in_processes, convert_one, export_threads, workers_for
from edgecnn.formats import Artifact, ExportJob, Format, Refusal, sha256_of, tool_versions
from edgecnn.formats.tflite import BEFORE_REPAIR
from edgecnn.harness.checks import check_artifacts
from edgecnn.harness.images import DEFAULT_IMAGE_COUNT, parity_images_for
from edgecnn.harness.inspect_int8 import REPAIR_FOLDER, write_repair_comparison
from edgecnn.harness.latency import LatencyOptions, measure_artifacts
from edgecnn.harness.parity import INT8_PRECISIONS, CheckStatus, gate
from edgecnn.harness.report import VALIDATION_FOLDER, write_report
from edgecnn.int8.request import Int8Request
from edgecnn.schema.details import Int8FileFacts, TFLiteDetails
from edgecnn.schema.enums import FormatName, Metric, Precision, RepairMode, WeightsKind
from edgecnn.schema.inputs import Preprocessing
from edgecnn.schema.int8 import Int8Target, RepairComparison
from edgecnn.schema.manifest import (
    LABELS_FILE,
    MANIFEST_SCHEMA,
    BatchNormStatistics,
    Manifest,
    ModelOrigin,
    ParityRecord,
    ReferenceProgram,
    WeightsRecord,
    to_json,
    write_manifest,
)
from edgecnn.schema.report import ValidationReport
from edgecnn.util import console
from edgecnn.util.atomic import atomic_folder, check_writable
from edgecnn.util.errors import ExportError, UsageError
from edgecnn.util.interrupts import checkpoint, deferred_interrupts
from edgecnn.util.tables import format_table
from edgecnn.weights.program import REFERENCE_FILE, save_reference, trace
from edgecnn.weights.reference import BATCHNORM_FILE, prepare_model, save_batchnorm_statistics
from edgecnn.weights.sources import WeightsSource, resolve
from edgecnn.weights.user_model import FAMILY, UserModel, UserModelSpec, raw_rgb
from edgecnn.zoo.models.layers import RawRGBInput
from edgecnn.zoo.registry import get_model_info
from edgecnn.zoo.spec import VariantSpec

SELF_CHECK_IMAGES = 4
LOG_FILE = "export.log"
REJECTED_FOLDER = "rejected"  # artifacts made but failing their check, kept for diagnosis, never loaded
NORMALIZATION = (
    "folded into the float graphs (raw RGB 0..255 in); the int8 TFLite takes int8 codes of the "
    "normalised image (its input.encoding has the lookup table)"
)


CALIBRATION_IMAGES = 100  # calibration images of an export unless --calib-count says otherwise


@dataclass
class ExportRequest:
    spec: "VariantSpec | UserModelSpec"
    formats: list[Format]
    weights: Optional[str] = None  # a path, "torchvision" or a packaged source (edgecnn.weights.sources)
    calib_dir: Optional[Path] = None
    calib_count: int = CALIBRATION_IMAGES
    out: Optional[Path] = None
    force: bool = False
    validate: bool = True  # the full harness with a report; without it a 4-photo self-check
    validate_count: int = DEFAULT_IMAGE_COUNT
    latency: Optional[LatencyOptions] = LatencyOptions()  # timed during validation; None: not timed
    verbose: bool = False  # third-party output live instead of into export.log
    int8_repair: RepairMode = RepairMode.AUTO
    int8_target: Optional[Int8Target] = None  # None: the int8 gate's bound when the weights are trained
    timings: dict[str, float] = field(default_factory=dict)
    parallel: bool = True  # formats side by side in processes of their own, where there are cores for it
    user_model: Optional[UserModel] = None  # a model from outside the zoo (its spec is `spec`)
    reference_program: Optional[torch.export.ExportedProgram] = None  # traced by check_request for a user model

    @property
    def target(self) -> Path:
        return self.out if self.out is not None else Path("export") / self.spec.id


@dataclass
class ExportResult:
    manifest: Manifest
    target: Path
    report: Optional[ValidationReport]  # the validation report, when the export validated
    rejected: list[Refusal] = field(default_factory=list)  # artifacts that failed their check, kept in rejected/
    # what each rejection that fails the export says (a pure int8 that an int8-mixed meeting the bound stands
    # in for does not fail it)
    rejected_lines: list[str] = field(default_factory=list)


def check_request(request: ExportRequest) -> Optional[WeightsSource]:
    """Every check that needs no heavy work, before any is done; returns where the weights come from."""
    target = request.target
    if target.exists() and not request.force:
        raise UsageError(f"{target} already exists; pass --force to replace it")
    if target.exists() and not target.is_dir():
        raise UsageError(f"{target} exists and is not a folder")
    check_writable(target.parent)
    if request.calib_count < 2:
        raise UsageError(f"--calib-count must be at least 2, got {request.calib_count}")
    for fmt in request.formats:
        fmt.load()
    source = None
    if request.user_model is not None:
        if request.weights is not None:  # only a checkpoint the project trained of it: its dataset comes along
            source = resolve(str(request.weights), request.user_model.origin.built_by)
            if source.kind != WeightsKind.PROJECT:
                raise UsageError(
                    "a user's model takes its weights when it is built (--weights FILE with --model MODULE:ATTR)"
                )
        with console.step(f"{request.spec.id}: traced with torch.export"):
            request.reference_program = trace(raw_rgb(request.user_model), request.spec.resolution)
    elif request.weights is not None:
        assert isinstance(request.spec, VariantSpec)
        source = resolve(str(request.weights), request.spec.model)
        source.read(request.spec.model)
    if request.calib_dir is not None:
        find_images(request.calib_dir)
    stated = request.int8_target
    if (
        stated is not None
        and stated.needs_labels
        and (source is None or source.dataset is None or request.calib_dir is not None)
    ):
        raise UsageError(
            f"--int8-target {stated} needs labelled images, which only --weights trained on a "
            "dataset edgecnn reads (e.g. fashion-mnist-demo) without --calib gives; "
            "use cosine=V or agreement=V"
        )
    return source


def run_export(request: ExportRequest) -> ExportResult:
    with deferred_interrupts():
        source = check_request(request)
        started = time.perf_counter()
        with atomic_folder(request.target, replace=request.force) as work:
            with console.third_party_to(work / LOG_FILE, verbose=request.verbose), export_threads():
                result = _export_into(request, source, work)
            checkpoint()
        request.timings["total"] = time.perf_counter() - started
        if result.rejected_lines:  # what passed is written; the export still fails
            raise ExportError("; ".join(result.rejected_lines))
        return result


@dataclass
class Reference:
    """The PyTorch model an export is made from and checked against, and what the manifest says of it."""

    wrapped: RawRGBInput
    weights: WeightsRecord
    family: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    labels: Optional[list[str]]
    origin: Optional[ModelOrigin] = None


def build_reference(request: ExportRequest, source: Optional[WeightsSource], calibration: np.ndarray) -> Reference:
    spec, user = request.spec, request.user_model
    if user is not None:
        return Reference(
            raw_rgb(user), user.weights, FAMILY, user.spec.mean, user.spec.std, user.spec.labels, user.origin
        )
    assert isinstance(spec, VariantSpec)
    info = get_model_info(spec.model)
    with console.step(f"{spec.id}: {spec.model} built (alpha {spec.alpha:g}, {spec.num_classes} classes)"):
        wrapped, weights = prepare_model(spec, source, calibration)
    assert isinstance(wrapped, RawRGBInput)  # prepare_model wraps the network in its normalisation
    labels = source.labels(spec.num_classes) if source is not None else None
    return Reference(wrapped, weights, info.family, info.mean, info.std, labels)


def _export_into(request: ExportRequest, source: Optional[WeightsSource], work: Path) -> ExportResult:
    spec = request.spec
    dataset = source.dataset if source is not None else None
    fraction = get_dataset(dataset).crop_fraction if dataset is not None else CROP_FRACTION
    calibration = calibration_images(request, dataset, fraction)
    reference = build_reference(request, source, calibration.images)
    wrapped, weights = reference.wrapped, reference.weights
    labels = reference.labels or [f"class_{i}" for i in range(spec.num_classes)]
    program, statistics = None, None
    if request.reference_program is not None:
        save_reference(request.reference_program, work / REFERENCE_FILE)
        program = ReferenceProgram(REFERENCE_FILE, sha256_of(work / REFERENCE_FILE))
    elif not weights.trained:  # kept, so that validate, bench and classify rebuild the reference in a second
        save_batchnorm_statistics(wrapped, work / BATCHNORM_FILE)
        statistics = BatchNormStatistics(BATCHNORM_FILE, sha256_of(work / BATCHNORM_FILE))
    preprocessing = Preprocessing(spec.resolution, crop_fraction=fraction)
    embedded = {
        "variant": spec.id,
        "mean": json.dumps(list(reference.mean)),
        "std": json.dumps(list(reference.std)),
        "preprocessing": json.dumps(to_json(preprocessing)),
        "weights": weights.source,
    }
    target = int8_target(request, weights)
    job = ExportJob(
        spec.id,
        spec.resolution,
        spec.num_classes,
        wrapped,
        wrapped.model,
        reference.mean,
        reference.std,
        calibration.images,
        labels,
        embedded,
        work,
        Int8Request(request.int8_repair, target, target_stated=request.int8_target is not None),
        preprocessing=preprocessing,
    )
    if target is not None and request.int8_repair != RepairMode.NONE:
        job.int8.repair_images, job.int8.repair_labels, job.int8.repair_source = repair_set(request, calibration)
        if calibration.dataset is not None:
            job.int8.tuning = TuningSet(calibration.dataset.name, spec.resolution, tuple(calibration.dataset.indices))
    count = request.validate_count if request.validate else SELF_CHECK_IMAGES
    images, origin = parity_images_for(dataset, spec.resolution, fraction, count)
    artifacts, refused, outputs = convert_formats(request, job, images)
    (work / LABELS_FILE).write_text("\n".join(labels) + "\n")
    manifest = Manifest(
        schema=MANIFEST_SCHEMA,
        variant=spec.id,
        model=spec.model,
        family=reference.family,
        alpha=spec.alpha,
        resolution=spec.resolution,
        num_classes=spec.num_classes,
        mean=list(reference.mean),
        std=list(reference.std),
        normalization=NORMALIZATION,
        preprocessing=preprocessing,
        weights=weights,
        labels=LABELS_FILE,
        artifacts=[a.record(work) for a in artifacts],
        calibration=calibration.provenance(),
        created_with=tool_versions(request.formats),
        dataset=dataset,
        refused=refused,
        origin=reference.origin,
        reference=program,
        batchnorm_statistics=statistics,
    )
    report = check_against_pytorch(request, wrapped, manifest, work, images, origin, outputs)
    if request.int8_target is not None:
        hold_to_target(report, request.int8_target, manifest)
    rejected, lines = keep_rejected(request, wrapped.model, manifest, report, images, work)
    kept = {r.path for r in rejected}
    manifest = Manifest(
        **{
            **manifest.__dict__,
            "artifacts": [a for a in manifest.artifacts if a.path not in kept],
            "refused": manifest.refused + rejected,
            "parity": {
                a.path: ParityRecord(a.status, a.parity, a.limits, a.reason)
                for a in report.artifacts
                if a.path not in kept
            },
        }
    )
    write_manifest(manifest, work)
    before_repair, comparison = work / BEFORE_REPAIR, None
    if request.validate and before_repair.is_file():
        comparison = compare_repair(manifest, report, wrapped.model, images, work)
        report.int8_repair = (
            None if comparison is None else dataclasses.replace(comparison, layers=[], folder=REPAIR_FOLDER)
        )
    before_repair.unlink(missing_ok=True)
    if request.validate:
        if request.latency is not None:
            with console.step(f"{spec.id}: latency"):
                report.latency = measure_artifacts(wrapped, manifest, work, images[0], request.latency)
        report.export = str(request.target)
        report.manifest_sha256 = sha256_of(work / "manifest.json")
        write_report(report, work / VALIDATION_FOLDER)
        if comparison is not None:
            write_repair_comparison(comparison, work / VALIDATION_FOLDER / REPAIR_FOLDER)
    return ExportResult(manifest, request.target, report if request.validate else None, rejected, lines)


def compare_repair(
    manifest: Manifest, report: ValidationReport, backbone: torch.nn.Module, images: np.ndarray, work: Path
) -> Optional[RepairComparison]:
    """The kept int8 TFLite and the one made before repair, inspected layer by layer on the check images."""
    from edgecnn.harness.inspect_int8 import inspect, repair_comparison

    record = next(
        (a for a in manifest.artifacts if (a.format, a.precision) == (FormatName.TFLITE, Precision.INT8)), None
    )
    details = record.details if record is not None else None
    repair = details.repair if isinstance(details, TFLiteDetails) else None
    kept = repair.kept if repair is not None else []
    if record is None or not isinstance(details, TFLiteDetails) or repair is None or not kept:
        return None
    unrepaired = dataclasses.replace(repair, applied=[], fine_tuning=None)
    before = dataclasses.replace(record, path=BEFORE_REPAIR, details=dataclasses.replace(details, repair=unrepaired))
    source = report.parity_images.source
    with console.step(f"{manifest.variant}: int8 inspected layer by layer before and after repair"):
        return repair_comparison(
            inspect(work, manifest, before, images, source, backbone),
            inspect(work, manifest, record, images, source, backbone),
            kept,
        )


def int8_target(request: ExportRequest, weights: WeightsRecord) -> Optional[Int8Target]:
    """The user's bound, or the int8 gate's for trained weights; untrained int8 is not gated, nor repaired."""
    if request.int8_target is not None:
        return request.int8_target
    return Int8Target(Metric.COSINE, gate(Precision.INT8, "min_cosine")) if weights.trained else None


HELD_OUT_CALIBRATION = 16  # without a labelled dataset, int8 candidates are measured on calibration images


def repair_set(request: ExportRequest, calibration: CalibrationSet):
    """What int8's candidates are measured on: labelled images calibration did not see, where the weights
    come with a dataset; otherwise the last calibration images (photos have no labels to spare)."""
    dataset = calibration.dataset
    if dataset is not None:
        return load_repair_set(dataset.name, request.spec.resolution, dataset.indices)
    images = calibration.images[-min(HELD_OUT_CALIBRATION, len(calibration.images)) :]
    return images, None, "calibration images"


def calibration_images(request: ExportRequest, dataset: Optional[str], fraction: float) -> CalibrationSet:
    if dataset is not None and request.calib_dir is None:
        return load_dataset_calibration(dataset, request.spec.resolution, request.calib_count)
    return load_calibration(request.spec.resolution, request.calib_count, request.calib_dir, crop_fraction=fraction)


def convert_formats(
    request: ExportRequest, job: ExportJob, parity_images: np.ndarray
) -> tuple[list[Artifact], list[Refusal], dict[str, np.ndarray]]:
    """Every format's artifacts, the precisions refused (each said in one line; the others kept), and the
    artifacts' outputs on `parity_images`. Several formats on several cores convert side by side, each in a
    process of its own (`conversion`), which also runs its artifacts on the parity images."""
    artifacts: list[Artifact] = []
    refused: list[Refusal] = []
    outputs: dict[str, np.ndarray] = {}

    def refusals(converted: Converted) -> None:
        for written in converted.written:
            if isinstance(written, Refusal):
                console.say(f"[edgecnn] {written.line()}")

    def announce(converted: Converted) -> None:
        refusals(converted)
        console.say(f"[edgecnn] {job.variant}: {converted.format} exported ({converted.seconds:.1f} s)")

    # A user's model converts in this process: its class may live in a .py file or a function that a
    # spawned process cannot import to unpickle it.
    if request.parallel and request.user_model is None and workers_for(request.formats) > 1:
        results = convert_in_processes(request.formats, job, announce, parity_images)
    else:
        results = []
        for fmt in request.formats:
            with console.step(f"{job.variant}: {fmt.name} exported"):
                results.append(convert_one(fmt, job, parity_images))
                refusals(results[-1])
            checkpoint()
    for converted in results:
        request.timings[converted.format] = converted.seconds
        refused += [w for w in converted.written if isinstance(w, Refusal)]
        artifacts += [w for w in converted.written if not isinstance(w, Refusal)]
        outputs.update(converted.parity_outputs)
    if not artifacts:
        raise ExportError("no artifact could be made: " + "; ".join(r.line() for r in refused))
    return artifacts, refused, outputs


def check_against_pytorch(
    request: ExportRequest,
    model: torch.nn.Module,
    manifest: Manifest,
    work: Path,
    images: np.ndarray,
    origin: str,
    outputs: dict[str, np.ndarray],
) -> ValidationReport:
    """Every artifact against PyTorch on `images` (`outputs`: the artifacts' outputs on them where their
    conversion already ran them) before anything is written. If none passes the export fails here;
    otherwise the failing ones are `keep_rejected`'s."""
    verb = "validated" if request.validate else "self-checked"
    with console.step(f"{manifest.variant}: every artifact {verb} against PyTorch on {origin}"):
        report = check_artifacts(model, manifest, work, images, images_source=origin, ran=outputs)
    failed = report.failures()
    if failed and len(failed) == len(report.artifacts):
        raise ExportError(f"{failed[0].failure_line()} (checked against PyTorch before anything was written)")
    return report


def hold_to_target(report: ValidationReport, target: Int8Target, manifest: Manifest) -> None:
    """An int8 check that misses the user's stated bound fails, whatever the weights (repair came first).

    A cosine bound is held on the check images too; agreement and top-1 bounds need more images than
    the check has (one disagreement in 16 is 94%), so the repair's measurement on its own images decides."""
    records = {a.path: a for a in manifest.artifacts}
    for check in report.artifacts:
        if check.precision not in INT8_PRECISIONS or check.parity is None:
            continue
        if target.metric == Metric.COSINE and check.parity.worst_cosine < target.value:
            check.status = CheckStatus.FAILED
            check.problems.append(f"worst cosine {check.parity.worst_cosine:.4f} misses --int8-target {target}")
        details = records[check.path].details
        measured = details.measured_against(str(target), target.metric) if isinstance(details, Int8FileFacts) else None
        if measured is not None and not target.met(measured):
            check.status = CheckStatus.FAILED
            check.problems.append(f"{target.metric} {measured:.4f} on the repair images misses --int8-target {target}")


def keep_rejected(
    request: ExportRequest,
    backbone: torch.nn.Module,
    manifest: Manifest,
    report: ValidationReport,
    images: np.ndarray,
    work: Path,
) -> tuple[list[Refusal], list[str]]:
    """Each artifact that failed its check moves to rejected/, out of the manifest's artifacts, and is
    recorded under `refused` with where it is kept. A failing int8 TFLite is inspected layer by layer
    first (rejected/inspect-int8/): a user needs that most when int8 fails."""
    from edgecnn.harness.inspect_int8 import FOLDER, inspect, worst_line, write_inspection

    rejected, lines = [], []
    records = {a.path: a for a in manifest.artifacts}
    failed = {c.path for c in report.failures()}
    stand_ins = {  # per format: an int8-mixed file stands in only for its own format's int8 file
        a.format: a for a in manifest.artifacts if a.precision == Precision.INT8_MIXED and a.path not in failed
    }
    for check in report.failures():
        record = records[check.path]
        line = f"{check.failure_line()}; kept as {REJECTED_FOLDER}/{record.path}"
        inspection = None
        if (record.format, record.precision) == (FormatName.TFLITE, Precision.INT8):
            with console.step(f"{manifest.variant}: the rejected {record.path} inspected layer by layer"):
                inspection = inspect(work, manifest, record, images, report.parity_images.source, backbone)
        (work / REJECTED_FOLDER).mkdir(exist_ok=True)
        (work / record.path).rename(work / REJECTED_FOLDER / record.path)
        repair = record.details.repair if isinstance(record.details, Int8FileFacts) else None
        search = repair.float_units if repair is not None else None
        if search is not None and not search.met:
            line += f"; {search.outcome}"
        if inspection is not None:
            write_inspection(inspection, work / REJECTED_FOLDER / FOLDER)
            line += (
                f"; {worst_line(inspection)}; per-layer inspection: "
                f"{request.target / REJECTED_FOLDER / FOLDER / 'layers.md'}"
            )
        rejected.append(
            Refusal(
                record.format,
                record.precision,
                record.path,
                check.failure_line(),
                kept=f"{REJECTED_FOLDER}/{record.path}",
                details=record.details,
            )
        )
        console.say(f"[edgecnn] {record.path} rejected: {line}")
        stand_in = stand_ins.get(record.format)
        if record.precision == Precision.INT8 and stand_in is not None:
            # the user's bound is met by the int8 file with float layers: the export succeeds with it
            console.say(
                f"[edgecnn] {stand_in.path} meets the bound with float for "
                f"{', '.join(getattr(stand_in.details, 'float_layers', []))}; it is not pure int8"
            )
            continue
        lines.append(line)
    return rejected, lines


def summary_table(manifest: Manifest) -> str:
    rows = []
    for artifact in manifest.artifacts:
        check = manifest.parity.get(artifact.path)
        if check is not None and check.parity is not None:
            p = check.parity
            quality = (
                f"{p.max_abs_error:.2e}",
                f"{p.worst_cosine:.5f}",
                f"{p.top1_agreement:.0%}",
                check.status.display(),
            )
        else:
            quality = ("-", "-", "-", check.status.display(check.reason) if check else "not run")
        rows.append([artifact.format, artifact.precision, artifact.path, f"{artifact.bytes / 2**20:.2f} MiB", *quality])
    for refusal in manifest.refused:
        rows.append([refusal.format, refusal.precision, "-", "-", "-", "-", "-", f"refused: {refusal.reason}"])
    return format_table(
        ["format", "precision", "file", "size", "max abs err", "worst cosine", "top-1 agree", "check"], rows
    )
