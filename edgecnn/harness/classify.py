"""`edgecnn classify EXPORT_DIR IMAGE...`: top-k class names from PyTorch and every artifact, side by side."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgecnn.data.preprocess import load_image, preprocess
from edgecnn.formats import format_of
from edgecnn.harness.checks import BATCH, pytorch_logits
from edgecnn.schema.manifest import open_export, read_labels
from edgecnn.util.errors import UsageError
from edgecnn.util.interrupts import deferred_interrupts
from edgecnn.weights.reference import reference_model

REFERENCE = "PyTorch fp32"


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def run_classify(export_dir: Path, images: list[Path], top: int = 5) -> dict:
    """Per image and per source (PyTorch, then every artifact): the top `top` (label, probability)."""
    if top < 1:
        raise UsageError(f"--top must be at least 1, got {top}")
    with deferred_interrupts():
        manifest = open_export(export_dir)
        labels = read_labels(export_dir, manifest)
        pixels = np.stack(
            [preprocess(load_image(path), manifest.resolution, manifest.crop_fraction) for path in images]
        )
        model = reference_model(manifest, export_dir)
        logits = {REFERENCE: pytorch_logits(model, pixels)[0]}
        for record in manifest.artifacts:
            runner = format_of(record).runner(export_dir / record.path, record)
            # an artifact not run by its own runtime says what ran it instead
            name = record.path + (f" ({runner.engine})" if runner.emulated else "")
            logits[name] = np.concatenate([runner.run(pixels[i : i + BATCH]) for i in range(0, len(pixels), BATCH)])
    k = min(top, len(labels))
    results = {}
    for i, path in enumerate(images):
        per_source = {}
        for name, values in logits.items():
            probabilities = softmax(values[i : i + 1].astype(np.float64))[0]
            order = np.argsort(-probabilities)[:k]
            per_source[name] = [(labels[j], float(probabilities[j])) for j in order]
        results[str(path)] = per_source
    return results


def format_results(results: dict) -> str:
    lines = []
    for image, per_source in results.items():
        lines.append(image)
        width = max(len(name) for name in per_source)
        reference_top = per_source[REFERENCE][0][0]
        for name, ranked in per_source.items():
            mark = (
                "" if name == REFERENCE else ("  same top-1" if ranked[0][0] == reference_top else "  DIFFERENT top-1")
            )
            lines.append(f"  {name:<{width}}  " + ", ".join(f"{label} {p:.1%}" for label, p in ranked) + mark)
    return "\n".join(lines)
