"""`make android-assets`: the Android demo's assets from export folders, with golden files for the Java core.

For every requested variant (`model:alpha:resolution[:weights]`) the export is made if it is missing
(TFLite and ExecuTorch), checked against its manifest, and its .tflite and .pte files and labels are copied
into the app's assets. `catalog.json` describes each model file as the app needs it (the runtime that runs
it, input dtype, shape and layout, int8 lookup table, output quantization, crop rule). For the golden image,
Python writes the exact input tensor each model takes, the raw output its runtime (LiteRT, or ExecuTorch)
gives for it and the top-5: the Java core must reproduce the first
byte for byte and the last from the second, and the app's self-test compares its own top-5 with it.
The assets folder is replaced only when complete.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from edgecnn.data.photos import SKIMAGE
from edgecnn.data.preprocess import Int8InputEncoding, load_image, preprocess
from edgecnn.export.manifest import open_export
from edgecnn.formats import ArtifactRecord, TensorSpec
from edgecnn.util import console
from edgecnn.util.atomic import atomic_folder, check_writable
from edgecnn.util.errors import UsageError
from edgecnn.zoo.spec import VariantSpec

CATALOG_SCHEMA = "edgecnn.android-catalog/1"
DEFAULT_ASSETS = Path("android_demo/app/src/main/assets")
GOLDEN_PHOTO = "chelsea.png"  # a lossless PNG: Java's decoder sees the very pixels PIL sees
TOP = 5
APP_FORMATS = {"tflite": "litert", "executorch": "executorch"}  # format -> the runtime the app runs it with


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
        variants.append(AppVariant(VariantSpec.create(parts[0], alpha=alpha, resolution=resolution,
                                                      num_classes=num_classes, weights=weights), weights))
    if not variants:
        raise UsageError("no variants given: VARIANTS=\"mobilenet_v2:0.35:128 mobilenet_v2:0.75:224\"")
    ids = [v.spec.id for v in variants]
    if len(set(ids)) != len(ids):
        raise UsageError(f"a variant is listed twice: {', '.join(sorted({i for i in ids if ids.count(i) > 1}))}")
    return variants


def ensure_export(variant: AppVariant, export_root: Path) -> Path:
    """The export folder of a variant, exported (TFLite and ExecuTorch) if missing; an existing one is used
    as it is."""
    from edgecnn.export.pipeline import ExportRequest, run_export
    from edgecnn.formats import parse_formats

    folder = export_root / variant.spec.id
    if (folder / "manifest.json").is_file():
        return folder
    console.say(f"[edgecnn] {variant.spec.id}: not exported yet; exporting TFLite and ExecuTorch")
    run_export(ExportRequest(variant.spec, parse_formats(",".join(APP_FORMATS)), weights=variant.weights, out=folder,
                             validate=False, latency=None))
    return folder


def golden_tensors(record: ArtifactRecord, model_file: Path, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(input tensor as the model takes it, raw output, dequantized logits) for one image, run by the
    model's own runtime."""
    encoding = record.input.encoding
    tensor = (Int8InputEncoding.from_dict(encoding).encode(pixels[None]) if encoding is not None
              else pixels[None].astype(np.float32))
    if record.input.layout == "NCHW":
        tensor = np.ascontiguousarray(tensor.transpose(0, 3, 1, 2))
    raw = _run_executorch(model_file, tensor) if record.format == "executorch" else _run_litert(model_file, tensor)
    q = record.output.quantization
    logits = raw.astype(np.float32) if q is None else (raw.astype(np.float32) - q.zero_point) * np.float32(q.scale)
    return tensor, raw, logits[0]


def _run_litert(model_file: Path, tensor: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(model_file), num_threads=1)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], tensor)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).copy()


def _run_executorch(model_file: Path, tensor: np.ndarray) -> np.ndarray:
    import torch

    from edgecnn.formats.executorch import PooledMethod

    method = PooledMethod(model_file, threads=1, verification="InternalConsistency")
    return method.execute([torch.from_numpy(tensor)])[0].numpy().copy()


def top_k(logits: np.ndarray, k: int = TOP) -> tuple[list[int], list[float]]:
    """Softmax in float64, then the k best, ties to the lower index (as the Java core ranks them)."""
    shifted = np.exp(logits.astype(np.float64) - logits.max())
    probabilities = shifted / shifted.sum()
    order = np.argsort(-probabilities, kind="stable")[:min(k, len(probabilities))]
    return [int(i) for i in order], [float(probabilities[i]) for i in order]


def _tensor_spec(tensor: TensorSpec) -> dict:
    spec = {"dtype": tensor.dtype, "shape": tensor.shape}
    if tensor.layout is not None:
        spec["layout"] = tensor.layout
    if tensor.quantization is not None:
        spec.update(scale=tensor.quantization.scale, zeroPoint=tensor.quantization.zero_point)
    if tensor.encoding:
        spec["lookupTable"] = tensor.encoding["lookup_table"]
    return spec


def build_assets(variants: list[AppVariant], assets: Path, export_root: Path = Path("export")) -> dict:
    check_writable(assets.parent)
    folders = [ensure_export(v, export_root) for v in variants]  # export first: nothing written on failure
    manifests = [open_export(folder) for folder in folders]  # the gate, before anything is copied
    photo = SKIMAGE.paths()[SKIMAGE.files.index(GOLDEN_PHOTO)]
    image = load_image(photo)
    with atomic_folder(assets, replace=True) as work:
        (work / "golden").mkdir(parents=True)
        shutil.copyfile(photo, work / "golden" / "golden.png")
        catalog = {"schema": CATALOG_SCHEMA, "variants": [],
                   "golden": {"image": "golden/golden.png", "source": f"scikit-image {GOLDEN_PHOTO}", "results": []}}
        for folder, manifest in zip(folders, manifests):
            variant = manifest.variant
            (work / "models" / variant).mkdir(parents=True)
            labels = f"models/{variant}/labels.txt"
            shutil.copyfile(folder / manifest.labels, work / labels)
            pixels = preprocess(image, manifest.resolution, manifest.crop_fraction)
            for record in (a for a in manifest.artifacts if a.format in APP_FORMATS):
                # the TFLite files keep the keys of catalogs before .pte files were bundled
                key = f"{variant}/{record.precision}" + (".pte" if record.format == "executorch" else "")
                target = f"models/{variant}/{Path(record.path).name}"
                shutil.copyfile(folder / record.path, work / target)
                catalog["variants"].append({
                    "key": key, "variant": variant, "model": manifest.model, "alpha": manifest.alpha,
                    "resolution": manifest.resolution, "precision": record.precision, "file": target,
                    "runtime": APP_FORMATS[record.format],
                    "sha256": record.sha256, "bytes": record.bytes, "labels": labels,
                    "numClasses": manifest.num_classes,
                    "preprocessing": {"cropFraction": manifest.crop_fraction,
                                      "color": manifest.preprocessing["color"]},
                    "input": _tensor_spec(record.input), "output": _tensor_spec(record.output),
                    "weights": manifest.weights.source})
                tensor, raw, logits = golden_tensors(record, work / target, pixels)
                stem = f"golden/{variant}_{Path(record.path).name.replace('.', '_')}"
                (work / f"{stem}.input.bin").write_bytes(np.ascontiguousarray(tensor).astype("<" + tensor.dtype.str[1:]).tobytes())
                (work / f"{stem}.output.bin").write_bytes(np.ascontiguousarray(raw).astype("<" + raw.dtype.str[1:]).tobytes())
                indices, scores = top_k(logits)
                catalog["golden"]["results"].append({"key": key, "inputTensor": f"{stem}.input.bin",
                                                     "outputTensor": f"{stem}.output.bin", "top5": indices,
                                                     "top5Scores": scores})
            if not any(a.format in APP_FORMATS for a in manifest.artifacts):
                raise UsageError(f"{folder} has no TFLite or ExecuTorch model; re-export it with --formats "
                                 f"tflite,executorch")
        (work / "catalog.json").write_text(json.dumps(catalog, indent=1) + "\n")
    return catalog
