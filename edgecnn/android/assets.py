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
from pathlib import Path

from edgecnn.apps.golden import (AppVariant, ensure_export, golden_tensors, little_endian_bytes, parse_variants,
                                 tensor_spec, top_k)
from edgecnn.data.photos import SKIMAGE
from edgecnn.data.preprocess import load_image, preprocess
from edgecnn.schema.manifest import open_export
from edgecnn.util.atomic import atomic_folder, check_writable
from edgecnn.util.errors import UsageError

CATALOG_SCHEMA = "edgecnn.android-catalog/1"
DEFAULT_ASSETS = Path("android_demo/app/src/main/assets")
GOLDEN_PHOTO = "chelsea.png"  # a lossless PNG: Java's decoder sees the very pixels PIL sees
APP_FORMATS = {"tflite": "litert", "executorch": "executorch"}  # format -> the runtime the app runs it with


def build_assets(variants: list[AppVariant], assets: Path, export_root: Path = Path("export")) -> dict:
    check_writable(assets.parent)
    folders = [ensure_export(v, export_root, APP_FORMATS) for v in variants]  # export first: nothing written on failure
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
                    "input": tensor_spec(record.input), "output": tensor_spec(record.output),
                    "weights": manifest.weights.source})
                tensor, raw, logits = golden_tensors(record, work / target, pixels)
                stem = f"golden/{variant}_{Path(record.path).name.replace('.', '_')}"
                (work / f"{stem}.input.bin").write_bytes(little_endian_bytes(tensor))
                (work / f"{stem}.output.bin").write_bytes(little_endian_bytes(raw))
                indices, scores = top_k(logits)
                catalog["golden"]["results"].append({"key": key, "inputTensor": f"{stem}.input.bin",
                                                     "outputTensor": f"{stem}.output.bin", "top5": indices,
                                                     "top5Scores": scores})
            if not any(a.format in APP_FORMATS for a in manifest.artifacts):
                raise UsageError(f"{folder} has no TFLite or ExecuTorch model; re-export it with --formats "
                                 f"tflite,executorch")
        (work / "catalog.json").write_text(json.dumps(catalog, indent=1) + "\n")
    return catalog
