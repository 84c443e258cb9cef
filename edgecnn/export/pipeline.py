"""`edgecnn export`: spec -> model (+weights) -> artifacts -> self-check -> manifest, written atomically.

Everything is written into a hidden sibling folder; only when every artifact exists, passed its
self-check and the manifest is written does the folder take the variant's name (replacing an older
export only with --force). A failure or an interrupt leaves what existed before untouched.
"""
from __future__ import annotations

import hashlib
import json
import platform
import shutil
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from edgecnn import __version__
from edgecnn.util.atomic import check_writable, replace_folder, work_dir
from edgecnn.data.calibration import find_images, load_calibration, load_dataset_calibration
from edgecnn.weights.sources import WeightsSource, resolve
from edgecnn.data.datasets import get_dataset
from edgecnn.util.errors import ExportError, UsageError
from edgecnn.formats import Artifact, ExportJob, Format
from edgecnn.util.interrupts import checkpoint, deferred_interrupts
from edgecnn.harness.latency import LatencyOptions, measure_artifacts
from edgecnn.zoo.models.layers import RawRGBInput
from edgecnn.data.preprocess import CROP_FRACTION, Preprocessing
from edgecnn.zoo.registry import create_model, get_model_info
from edgecnn.harness.report import write_report
from edgecnn.zoo.spec import VariantSpec
from edgecnn.harness.validate import (DEFAULT_IMAGE_COUNT, MANIFEST_SCHEMA, VALIDATION_FOLDER, check_artifacts, failures,
                       parity_images)
from edgecnn.weights.loading import load_weights, reestimate_batchnorm

INIT_SEED = 0
SELF_CHECK_IMAGES = 4


@dataclass
class ExportRequest:
    spec: VariantSpec
    formats: list[Format]
    weights: Optional[str] = None  # a path, "torchvision" or a packaged source (edgecnn.weights.sources)
    calib_dir: Optional[Path] = None
    calib_count: int = 100
    out: Optional[Path] = None
    force: bool = False
    validate: bool = True  # the full harness with a report; without it a 4-photo self-check
    validate_count: int = DEFAULT_IMAGE_COUNT
    latency: Optional[LatencyOptions] = LatencyOptions()  # timed during validation; None: not timed
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def target(self) -> Path:
        return self.out if self.out is not None else Path("export") / self.spec.id


def _step(message: str) -> None:
    print(f"[edgecnn] {message}", file=sys.stderr, flush=True)


def _check_request(request: ExportRequest) -> Optional[WeightsSource]:
    """Every check that needs no heavy work, before any is done; returns where the weights come from."""
    if request.target.exists() and not request.force:
        raise UsageError(f"{request.target} already exists; pass --force to replace it")
    if request.target.exists() and not request.target.is_dir():
        raise UsageError(f"{request.target} exists and is not a folder")
    check_writable(request.target.parent)
    if request.calib_count < 2:
        raise UsageError(f"--calib-count must be at least 2, got {request.calib_count}")
    for fmt in request.formats:
        fmt.load()
    source = None
    if request.weights is not None:
        source = resolve(str(request.weights), request.spec.model)
        source.read(request.spec.model)
    if request.calib_dir is not None:
        find_images(request.calib_dir)
    return source


def run_export(request: ExportRequest) -> dict:
    with deferred_interrupts():
        return _run_export(request)


def _run_export(request: ExportRequest) -> dict:
    spec = request.spec
    info = get_model_info(spec.model)
    source = _check_request(request)
    started = time.perf_counter()

    dataset = source.dataset if source is not None else None
    fraction = get_dataset(dataset).crop_fraction if dataset is not None else CROP_FRACTION
    _step(f"{spec.id}: calibration images")
    if dataset is not None and request.calib_dir is None:
        calibration = load_dataset_calibration(dataset, spec.resolution, request.calib_count)
    else:
        calibration = load_calibration(spec.resolution, request.calib_count, request.calib_dir,
                                       crop_fraction=fraction)

    _step(f"{spec.id}: building {spec.model} (alpha {spec.alpha:g}, {spec.num_classes} classes)")
    wrapped, weights = prepare_model(spec, source, calibration.images)

    labels = (source.labels(spec.num_classes) if source is not None else None) \
        or [f"class_{i}" for i in range(spec.num_classes)]
    preprocessing = Preprocessing(spec.resolution, crop_fraction=fraction)
    embedded = {"variant": spec.id, "mean": json.dumps(list(info.mean)), "std": json.dumps(list(info.std)),
                "preprocessing": json.dumps(preprocessing.to_dict()), "weights": weights["source"]}
    work = work_dir(request.target)
    try:
        job = ExportJob(spec.id, spec.resolution, spec.num_classes, wrapped, wrapped.model, info.mean, info.std,
                        calibration.images, labels, embedded, work)
        artifacts: list[Artifact] = []
        for fmt in request.formats:
            _step(f"{spec.id}: exporting {fmt.name}")
            t = time.perf_counter()
            artifacts += fmt.load().export(job)
            request.timings[fmt.name] = time.perf_counter() - t
            checkpoint()

        (work / "labels.txt").write_text("\n".join(labels) + "\n")
        manifest = {
            "schema": MANIFEST_SCHEMA,
            "variant": spec.id, "model": spec.model, "family": info.family, "alpha": spec.alpha,
            "resolution": spec.resolution, "num_classes": spec.num_classes,
            "mean": list(info.mean), "std": list(info.std),
            "normalization": "folded into the float graphs (raw RGB 0..255 in); the int8 TFLite takes "
                             "int8 codes of the normalised image (its input.encoding has the lookup table)",
            "preprocessing": preprocessing.to_dict(),
            "weights": weights,
            "dataset": dataset,  # what it was trained on, if edgecnn knows the dataset
            "labels": "labels.txt",
            "artifacts": [a.to_dict(work) for a in artifacts],
            "calibration": calibration.provenance(),
            "parity": None,
            "created_with": tool_versions(),
        }
        count = request.validate_count if request.validate else SELF_CHECK_IMAGES
        images, origin = parity_images(manifest, count)
        _step(f"{spec.id}: {'validating' if request.validate else 'self-check of'} every artifact against "
              f"PyTorch on {origin}")
        report = check_artifacts(wrapped, manifest, work, images)
        problems = failures(report)
        if problems:
            raise ExportError(f"{problems[0]} (checked against PyTorch before anything was written)")
        manifest["parity"] = {a["path"]: {"status": a["status"], **a.get("parity", {}), "reason": a.get("reason"),
                                          "limits": a.get("limits")}
                              for a in report["artifacts"]}
        (work / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
        if request.validate and request.latency is not None:
            _step(f"{spec.id}: latency")
            report["latency"] = measure_artifacts(wrapped, manifest, work, images[0], request.latency)
        if request.validate:
            report.update(export=str(request.target),
                          manifest_sha256=hashlib.sha256((work / "manifest.json").read_bytes()).hexdigest())
            write_report(report, work / VALIDATION_FOLDER)
        checkpoint()
        replace_folder(work, request.target)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    request.timings["total"] = time.perf_counter() - started
    return manifest


def prepare_model(spec: VariantSpec, source: Optional[WeightsSource],
                  calibration: np.ndarray) -> tuple[torch.nn.Module, dict]:
    """The eval-mode PyTorch reference every artifact is compared with: raw RGB in, logits out."""
    info = get_model_info(spec.model)
    torch.manual_seed(INIT_SEED)
    options = source.builder_options if source is not None else {}
    model = create_model(spec.model, alpha=spec.alpha, num_classes=spec.num_classes, **options)
    wrapped = RawRGBInput(model, info.mean, info.std).eval()
    if source is not None:
        load_weights(model, source.read(spec.model), spec.model, source.describe())
        return wrapped, {"source": source.describe(), "kind": source.kind, "name": source.name,
                         "path": str(source.path.resolve()), "sha256": source.sha256(), "trained": True,
                         "builder_options": options, "imagenet_classes": source.imagenet_classes}
    print("  NOTE: no --weights given: the weights are random (untrained); BatchNorm statistics are "
          "re-estimated on the calibration images so that outputs depend on the input", file=sys.stderr)
    reestimate_batchnorm(wrapped, calibration)
    return wrapped, {"source": f"random initialisation (seed {INIT_SEED}), UNTRAINED", "trained": False,
                     "batchnorm": "statistics re-estimated on the calibration images"}


def tool_versions() -> dict:
    versions = {"edgecnn": __version__, "python": platform.python_version()}
    for dist in ("torch", "numpy", "onnx", "onnxscript", "onnxruntime", "litert-torch", "ai-edge-litert",
                 "torchao", "coremltools", "pillow", "scikit-image"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return versions


def summary_table(manifest: dict) -> str:
    rows = []
    for artifact in manifest["artifacts"]:
        check = manifest["parity"].get(artifact["path"], {})
        if "worst_cosine" in check:
            quality = (f"{check['max_abs_error']:.2e}", f"{check['worst_cosine']:.5f}", f"{check['top1_agreement']:.0%}",
                       check["status"])
        else:
            quality = ("-", "-", "-", f"not run: {check.get('reason', '')}")
        rows.append([artifact["format"], artifact["precision"], artifact["path"],
                     f"{artifact['bytes'] / 2**20:.2f} MiB", *quality])
    header = ["format", "precision", "file", "size", "max abs err", "worst cosine", "top-1 agree", "check"]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in [header, *rows]]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths)] + lines[1:])
