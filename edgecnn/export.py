"""`edgecnn export`: spec -> model (+weights) -> artifacts -> self-check -> manifest, written atomically.

Everything is written into a hidden sibling folder; only when every artifact exists, passed its
self-check and the manifest is written does the folder take the variant's name (replacing an older
export only with --force). A failure or an interrupt leaves what existed before untouched.
"""
from __future__ import annotations

import copy
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from . import __version__
from .calibration import find_images, load_calibration
from .errors import ExportError, UsageError
from .formats import Artifact, ExportJob, Format
from .interrupts import checkpoint, deferred_interrupts
from .models.layers import RawRGBInput
from .parity import compare, distinct_outputs, is_gated, violations
from .preprocess import Preprocessing
from .registry import create_model, get_model_info
from .spec import VariantSpec
from .weights import load_state_dict, load_weights, reestimate_batchnorm

MANIFEST_SCHEMA = "edgecnn.manifest/1"
INIT_SEED = 0
SELF_CHECK_IMAGES = 4


@dataclass
class ExportRequest:
    spec: VariantSpec
    formats: list[Format]
    weights: Optional[Path] = None
    calib_dir: Optional[Path] = None
    calib_count: int = 100
    out: Optional[Path] = None
    force: bool = False
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def target(self) -> Path:
        return self.out if self.out is not None else Path("export") / self.spec.id


def _step(message: str) -> None:
    print(f"[edgecnn] {message}", file=sys.stderr, flush=True)


def _check_request(request: ExportRequest) -> None:
    """Every check that needs no heavy work, before any is done."""
    if request.target.exists() and not request.force:
        raise UsageError(f"{request.target} already exists; pass --force to replace it")
    if request.target.exists() and not request.target.is_dir():
        raise UsageError(f"{request.target} exists and is not a folder")
    _check_writable(request.target.parent)
    if request.calib_count < 2:
        raise UsageError(f"--calib-count must be at least 2, got {request.calib_count}")
    for fmt in request.formats:
        fmt.load()
    if request.weights is not None:
        load_state_dict(request.weights)
    if request.calib_dir is not None:
        find_images(request.calib_dir)


def _check_writable(folder: Path) -> None:
    existing = folder.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"cannot write to {folder}: {existing} is not a writable folder")


def _work_dir(target: Path) -> Path:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
        umask = os.umask(0)
        os.umask(umask)
        work.chmod(0o777 & ~umask)  # mkdtemp makes it private; the export is an ordinary folder
        return work
    except OSError as err:
        raise UsageError(f"cannot write to {target.parent}: {err.strerror or err}") from None


def _replace(work: Path, target: Path) -> None:
    old = None
    if target.exists():
        old = target.parent / f".{target.name}.old-{os.getpid()}"
        target.rename(old)
    try:
        work.rename(target)
    except BaseException:
        if old is not None:
            old.rename(target)  # put the earlier export back
        raise
    if old is not None:
        shutil.rmtree(old)


def run_export(request: ExportRequest) -> dict:
    with deferred_interrupts():
        return _run_export(request)


def _run_export(request: ExportRequest) -> dict:
    spec = request.spec
    info = get_model_info(spec.model)
    _check_request(request)
    started = time.perf_counter()

    _step(f"{spec.id}: calibration images")
    calibration = load_calibration(spec.resolution, request.calib_count, request.calib_dir)

    _step(f"{spec.id}: building {spec.model} (alpha {spec.alpha:g}, {spec.num_classes} classes)")
    wrapped, weights = prepare_model(spec, request.weights, calibration.images)

    labels = [f"class_{i}" for i in range(spec.num_classes)]
    preprocessing = Preprocessing(spec.resolution)
    embedded = {"variant": spec.id, "mean": json.dumps(list(info.mean)), "std": json.dumps(list(info.std)),
                "preprocessing": json.dumps(preprocessing.to_dict()), "weights": weights["source"]}
    work = _work_dir(request.target)
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

        _step(f"{spec.id}: self-check of every artifact against PyTorch")
        parity = self_check(wrapped, artifacts, calibration.images[:SELF_CHECK_IMAGES], work, weights["trained"])
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
            "labels": "labels.txt",
            "artifacts": [a.to_dict(work) for a in artifacts],
            "calibration": calibration.provenance(),
            "parity": parity,
            "created_with": tool_versions(),
        }
        (work / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
        checkpoint()
        _replace(work, request.target)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    request.timings["total"] = time.perf_counter() - started
    return manifest


def prepare_model(spec: VariantSpec, weights_path: Optional[Path],
                  calibration: np.ndarray) -> tuple[torch.nn.Module, dict]:
    """The eval-mode PyTorch reference every artifact is compared with: raw RGB in, logits out."""
    info = get_model_info(spec.model)
    torch.manual_seed(INIT_SEED)
    model = create_model(spec.model, alpha=spec.alpha, num_classes=spec.num_classes)
    wrapped = RawRGBInput(model, info.mean, info.std).eval()
    if weights_path is not None:
        digest = load_weights(model, weights_path, spec.model)
        return wrapped, {"source": str(weights_path), "sha256": digest, "trained": True}
    print("  NOTE: no --weights given: the weights are random (untrained); BatchNorm statistics are "
          "re-estimated on the calibration images so that outputs depend on the input", file=sys.stderr)
    reestimate_batchnorm(wrapped, calibration)
    return wrapped, {"source": f"random initialisation (seed {INIT_SEED}), UNTRAINED", "trained": False,
                     "batchnorm": "statistics re-estimated on the calibration images"}


def self_check(model: torch.nn.Module, artifacts: list[Artifact], images: np.ndarray, root: Path,
               trained: bool) -> dict:
    from .formats import FORMATS

    x = torch.from_numpy(images).permute(0, 3, 1, 2)
    with torch.no_grad():
        expected = model(x.float()).numpy()
        fp32_noise = compare(expected, copy.deepcopy(model).double()(x.double()).numpy()).max_rel_error
    if not distinct_outputs(expected):
        raise ExportError("PyTorch gives the same output for different images: parity would prove nothing")
    results = {}
    for artifact in artifacts:
        checkpoint()
        record = {"input": artifact.input, "output": artifact.output}
        try:
            runner = FORMATS[artifact.format].load().Runner(root / artifact.path, record)
        except RuntimeError as err:  # a runtime this machine lacks (Core ML predicts only on macOS)
            results[artifact.path] = {"status": "not run", "reason": str(err)}
            continue
        parity = compare(runner.run(images), expected)
        problems = violations(parity, artifact.precision, trained, fp32_noise)
        if problems:
            raise ExportError(f"{artifact.path} ({artifact.precision}) fails its self-check: " + "; ".join(problems))
        gated = is_gated(artifact.precision, trained)
        results[artifact.path] = {"status": "passed" if gated else "reported (not gated: untrained weights)",
                                  **parity.to_dict(), "pytorch_fp32_noise": round(fp32_noise, 10)}
    return results


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
