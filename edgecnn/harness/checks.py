"""Every artifact of an export against PyTorch fp32 on the same images: parity, limits, status, accuracy.

This is pure measurement. It reads artifacts through their format's runner and returns a
`ValidationReport` without writing anything. `edgecnn.harness.validate` (the command) and the export
pipeline (its self-check before anything is written) both call `check_artifacts`.
"""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from edgecnn.formats import ArtifactRecord, format_of, tool_versions
from edgecnn.harness.images import LabelledSet
from edgecnn.harness.parity import (
    FP32_NOISE_FACTOR,
    CheckStatus,
    Parity,
    compare,
    distinct_outputs,
    limits,
    status_of,
    violations,
)
from edgecnn.schema.manifest import Manifest, manifest_sha256
from edgecnn.schema.report import Accuracy, ArtifactCheck, ImagesUsed, LabelledSummary, ValidationReport
from edgecnn.util import console
from edgecnn.util.errors import ExportError
from edgecnn.util.interrupts import checkpoint

BATCH = 8  # images per runner call: small enough to show progress, large enough to keep runners busy


def run_artifact(
    root: Path, record: ArtifactRecord, images: np.ndarray, progress: bool = True, batch: int = BATCH
) -> np.ndarray:
    runner = format_of(record).runner(root / record.path, record)
    starts = range(0, len(images), batch)
    outputs = []
    for start in console.track(starts, f"{record.path}: {len(images)} images", announce=False) if progress else starts:
        checkpoint()
        outputs.append(runner.run(images[start : start + batch]))
    return np.concatenate(outputs)


def labelled_batch(count: int) -> int:
    """Large labelled sets run in bigger batches (runners that take a batch amortise their overhead),
    still reporting progress about twenty times."""
    return max(BATCH, count // 20)


def pytorch_logits(
    model: torch.nn.Module, images: np.ndarray, with_noise: bool = True, batch: int = BATCH
) -> tuple[np.ndarray, Optional[Parity]]:
    """fp32 logits, and how far they are from float64 (what fp32 arithmetic itself costs on this model)."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2)
    with torch.no_grad():
        expected = torch.cat([model(b.float()) for b in x.split(batch)]).numpy()
        if not with_noise:
            return expected, None
        exact = copy.deepcopy(model).double()
        noise = compare(expected, torch.cat([exact(b.double()) for b in x.split(BATCH)]).numpy())
    return expected, noise


def top_k_accuracy(logits: np.ndarray, targets: np.ndarray, k: int) -> float:
    k = min(k, logits.shape[1])
    top = np.argsort(-logits, axis=1)[:, :k]
    return float((top == targets[:, None]).any(axis=1).mean())


def accuracy(
    logits: np.ndarray,
    targets: np.ndarray,
    reference: Optional[Accuracy] = None,
    reference_logits: Optional[np.ndarray] = None,
) -> Accuracy:
    top1, top5 = round(top_k_accuracy(logits, targets, 1), 6), round(top_k_accuracy(logits, targets, 5), 6)
    if reference is None:
        return Accuracy(top1, top5)
    agreement = (
        None if reference_logits is None else round(float((logits.argmax(1) == reference_logits.argmax(1)).mean()), 6)
    )
    return Accuracy(top1, top5, round(reference.top1 - top1, 6), round(reference.top5 - top5, 6), agreement)


def check_one(
    record: ArtifactRecord, logits: np.ndarray, expected: np.ndarray, trained: bool, noise: Optional[Parity]
) -> ArtifactCheck:
    """Parity of one artifact's logits, held to its precision's limits (fp32 widened by PyTorch's own noise)."""
    parity = compare(logits, expected)
    problems = violations(parity, record.precision, trained, noise)
    return ArtifactCheck(
        record.path,
        record.format,
        record.precision,
        status_of(record.precision, trained, problems),
        parity,
        limits(record.precision, noise),
        problems,
    )


def check_artifacts(
    model: torch.nn.Module,
    manifest: Manifest,
    root: Path,
    images: np.ndarray,
    labelled: Optional[LabelledSet] = None,
    progress: bool = True,
    images_source: str = "",
    ran: Optional[dict[str, np.ndarray]] = None,
) -> ValidationReport:
    """Run every artifact; returns the report (without writing anything). `ran`: outputs on `images`
    already computed (by the process that converted the artifact), by artifact path."""
    trained = manifest.weights.trained
    expected, noise = pytorch_logits(model, images)
    assert noise is not None  # pytorch_logits measures it unless told not to (with_noise=False)
    if not distinct_outputs(expected):
        raise ExportError("PyTorch gives the same output for different images: parity would prove nothing")
    reference = None
    summary = None
    if labelled is not None:
        reference_logits = pytorch_logits(
            model, labelled.images, with_noise=False, batch=labelled_batch(len(labelled.images))
        )[0]
        reference = accuracy(reference_logits, labelled.targets)
        summary = LabelledSummary(labelled.folder, int(len(labelled.targets)), labelled.classes, reference)
    checks = []
    for record in manifest.artifacts:
        try:
            logits = ran[record.path] if ran and record.path in ran else run_artifact(root, record, images, progress)
        except RuntimeError as err:  # a runtime this machine lacks
            checks.append(
                ArtifactCheck(record.path, record.format, record.precision, CheckStatus.NOT_RUN, reason=str(err))
            )
            continue
        check = check_one(record, logits, expected, trained, noise)
        if labelled is not None:
            labelled_logits = run_artifact(
                root, record, labelled.images, progress, labelled_batch(len(labelled.images))
            )
            check.accuracy = accuracy(labelled_logits, labelled.targets, reference, reference_logits)
        checks.append(check)
    return ValidationReport(
        variant=manifest.variant,
        export=str(root),
        manifest_sha256=manifest_sha256(root),
        weights=manifest.weights,
        parity_images=ImagesUsed(
            int(len(images)), hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest(), images_source
        ),
        pytorch_fp32_vs_float64=noise,
        fp32_limit_note=f"fp32 limits are the table's, widened to {FP32_NOISE_FACTOR:g} x PyTorch fp32's own "
        "deviation from float64 where that is larger",
        labelled=summary,
        artifacts=checks,
        created_with=tool_versions(),
    )
