"""The demo apps' shared ground: which variants to bundle, their exports, and Python's golden results.

An app proves it computes what Python computes on golden files: for a golden image and each model file,
the exact input tensor the model takes, the raw output the model's own runtime (LiteRT, ONNX Runtime or
ExecuTorch) gives for it, and the top-5 ranked from that output.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np

from edgecnn.data.preprocess import Int8InputEncoding
from edgecnn.formats import ArtifactRecord, TensorSpec, litert
from edgecnn.util import console
from edgecnn.util.errors import UsageError
from edgecnn.zoo.spec import VariantSpec

TOP = 5


@dataclass(frozen=True)
class AppVariant:
    spec: VariantSpec
    weights: Optional[str]


def parse_variants(text: str) -> list[AppVariant]:
    """`mobilenet_v2:0.35:128 mobilenet_v2:0.5:32:fashion-mnist-demo` -> checked variants."""
    variants = []
    for item in text.split():
        parts = item.split(":")
        if len(parts) not in (3, 4):
            raise UsageError(f"variant {item!r} is not model:alpha:resolution[:weights]")
        try:
            alpha, resolution = float(parts[1]), int(parts[2])
        except ValueError:
            raise UsageError(f"variant {item!r}: alpha must be a number and resolution a whole number") from None
        weights = parts[3] if len(parts) == 4 else None
        num_classes = 1000
        if weights is not None:
            from edgecnn.weights.sources import trained_variant

            trained = trained_variant(weights)
            if trained is not None:
                trained.check(weights, parts[0], alpha, trained.num_classes)
                num_classes = trained.num_classes
        variants.append(
            AppVariant(
                VariantSpec.create(
                    parts[0], alpha=alpha, resolution=resolution, num_classes=num_classes, weights=weights
                ),
                weights,
            )
        )
    if not variants:
        raise UsageError('no variants given: VARIANTS="mobilenet_v2:0.35:128 mobilenet_v2:0.75:224"')
    ids = [v.spec.id for v in variants]
    if len(set(ids)) != len(ids):
        raise UsageError(f"a variant is listed twice: {', '.join(sorted({i for i in ids if ids.count(i) > 1}))}")
    return variants


def export_folders(items: Sequence[str], export_root: Path) -> list[Path]:
    """Existing exports an app bundles, each given as its folder or as its id under `export_root`."""
    folders = []
    for item in items:
        candidates = [Path(item), export_root / item]
        folder = next((c for c in candidates if (c / "manifest.json").is_file()), None)
        if folder is None:
            raise UsageError(
                f"{item}: no export there (a folder holding manifest.json, or an export id under {export_root})"
            )
        folders.append(folder)
    return folders


def ensure_export(variant: AppVariant, export_root: Path, formats: Iterable[str]) -> Path:
    """The export folder of a variant, exported in `formats` if missing; an existing one is used as it is."""
    from edgecnn.exporter.pipeline import ExportRequest, run_export
    from edgecnn.formats import parse_formats

    folder = export_root / variant.spec.id
    if (folder / "manifest.json").is_file():
        return folder
    formats = list(formats)
    console.say(f"[edgecnn] {variant.spec.id}: not exported yet; exporting {', '.join(formats)}")
    run_export(
        ExportRequest(
            variant.spec,
            parse_formats(",".join(formats)),
            weights=variant.weights,
            out=folder,
            validate=False,
            latency=None,
        )
    )
    return folder


def input_tensor(record: ArtifactRecord, pixels: np.ndarray) -> np.ndarray:
    """(R, R, 3) uint8 RGB -> the batch-1 tensor the model file takes (int8 codes or float, its layout)."""
    encoding = record.input.encoding
    tensor = (
        Int8InputEncoding.from_record(encoding).encode(pixels[None])
        if encoding is not None
        else pixels[None].astype(np.float32)
    )
    if record.input.layout == "NCHW":
        tensor = np.ascontiguousarray(tensor.transpose(0, 3, 1, 2))
    return tensor


def golden_tensors(
    record: ArtifactRecord, model_file: Path, pixels: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(input tensor as the model takes it, raw output, dequantized logits) for one image, run by the
    model's own runtime."""
    tensor = input_tensor(record, pixels)
    runners = {"executorch": _run_executorch, "tflite": _run_litert, "onnx": _run_onnxruntime}
    if record.format not in runners:
        raise UsageError(f"no golden runner for {record.format} files")
    raw = runners[record.format](model_file, tensor)
    return tensor, raw, dequantize(raw, record.output)[0]


def dequantize(raw: np.ndarray, spec: TensorSpec) -> np.ndarray:
    q = spec.quantization
    return raw.astype(np.float32) if q is None else (raw.astype(np.float32) - q.zero_point) * np.float32(q.scale)


def _run_litert(model_file: Path, tensor: np.ndarray) -> np.ndarray:
    interpreter = litert.interpreter(model_file, threads=1)
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], tensor)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).copy()


def _run_onnxruntime(model_file: Path, tensor: np.ndarray) -> np.ndarray:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: tensor})[0]


def _run_executorch(model_file: Path, tensor: np.ndarray) -> np.ndarray:
    import torch

    from edgecnn.formats.executorch import PooledMethod

    method = PooledMethod(model_file, threads=1, verification="InternalConsistency")
    return method.execute([torch.from_numpy(tensor)])[0].numpy().copy()


def top_k(logits: np.ndarray, k: int = TOP) -> tuple[list[int], list[float]]:
    """Softmax in float64, then the k best, ties to the lower index (as the apps rank them)."""
    shifted = np.exp(logits.astype(np.float64) - logits.max())
    probabilities = shifted / shifted.sum()
    order = np.argsort(-probabilities, kind="stable")[: min(k, len(probabilities))]
    return [int(i) for i in order], [float(probabilities[i]) for i in order]


def little_endian_bytes(array: np.ndarray) -> bytes:
    return np.ascontiguousarray(array).astype("<" + array.dtype.str[1:]).tobytes()
