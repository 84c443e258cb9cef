"""`edgecnn web-demo`: a static site that classifies with the exported models in a phone's browser.

For every requested variant (`model:alpha:resolution[:weights]`) the export is made if it is missing (ONNX
and TFLite), checked against its manifest, and its model files are copied into the site with the page
(package data, `edgecnn/web/page/`) and the two WebAssembly runtimes from the npm project of a checkout
(`web_demo/node_modules`; `--npm-folder` names another):
- fp32 ONNX in onnxruntime-web (WASM SIMD, threads where the page is cross-origin isolated);
- fp32 and int8 TFLite in LiteRT.js: the int8 file with its int8 input and output, as on a phone.
`catalog.json` describes each model file as the page needs it. For two golden images of different aspect
ratios, Python writes per model file the exact input tensor, the raw output of the same file in Python's
runtime (ONNX Runtime, LiteRT) and the top-5: the page must reproduce the first byte for byte and the
last from its own output. The site folder is replaced only when complete.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from PIL import Image

from edgecnn.apps.golden import (AppVariant, ensure_export, golden_tensors, little_endian_bytes, tensor_spec,
                                 top_k)
from edgecnn.data.photos import SKIMAGE
from edgecnn.data.preprocess import load_image, preprocess
from edgecnn.schema.manifest import open_export
from edgecnn.util.atomic import atomic_folder, check_writable
from edgecnn.util.errors import UsageError

CATALOG_SCHEMA = "edgecnn.web-catalog/1"
PAGE_SOURCE = Path(__file__).with_name("page")
# the npm project (package.json, node_modules, tools/selftest.mjs): not package data, since its packages are
# installed by npm; by default the checkout's, relative to where edgecnn runs
NPM_FOLDER = Path("web_demo")
DEFAULT_SITE = NPM_FOLDER / "site"
NPM_PACKAGES = ("onnxruntime-web", "@litertjs/core", "puppeteer-core")
PAGE_FILES = ("index.html", "style.css", "js")
# format -> the runtime the page runs it with
WEB_RUNTIMES = {"onnx": "onnxruntime-web", "tflite": "litert.js"}
# what the site needs of each npm package: (package folder, files or folders, where they go under vendor/)
RUNTIME_FILES = (
    ("onnxruntime-web/dist", ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm"),
     "onnxruntime-web"),
    ("@litertjs/core/dist", ("index.js",), "litertjs/core"),
    ("@litertjs/wasm-utils/dist", ("index.js",), "litertjs/wasm-utils"),
    ("@litertjs/core/wasm", ("litert_wasm_internal.js", "litert_wasm_internal.wasm",
                             "litert_wasm_threaded_internal.js", "litert_wasm_threaded_internal.wasm",
                             "litert_wasm_compat_internal.js", "litert_wasm_compat_internal.wasm"), "litertjs/wasm"),
)


def golden_images() -> list[tuple[str, Image.Image, str]]:
    """(name, image, source) of the two golden images: scikit-image's chelsea (landscape, 451x300) and a
    portrait cut of its coffee (267x400), both lossless PNG so that every decoder sees PIL's pixels."""
    paths = dict(zip(SKIMAGE.files, SKIMAGE.paths()))
    coffee = load_image(paths["coffee.png"]).crop((180, 0, 447, 400))
    return [("chelsea.png", load_image(paths["chelsea.png"]), "scikit-image chelsea.png"),
            ("coffee-portrait.png", coffee, "scikit-image coffee.png, columns 180..446")]


def missing_npm_packages(npm_folder: Path) -> UsageError:
    return UsageError(f"the web demo needs the npm packages {', '.join(NPM_PACKAGES)}, not found in {npm_folder}/"
                      f"node_modules: run `npm ci` in a checkout's web_demo/ (make web-demo does) and pass "
                      f"--npm-folder PATH/web_demo")


def runtime_files(npm_folder: Path = NPM_FOLDER) -> list[tuple[Path, str]]:
    """(installed file, path in the site) of the runtimes' files; a missing one is a UsageError."""
    modules = npm_folder / "node_modules"
    files = []
    for folder, names, target in RUNTIME_FILES:
        for name in names:
            source = modules / folder / name
            if not source.is_file():
                raise missing_npm_packages(npm_folder)
            files.append((source, f"vendor/{target}/{name}"))
    return files


def _package_versions(npm_folder: Path) -> dict[str, str]:
    versions = {}
    for package in ("onnxruntime-web", "@litertjs/core"):
        record = json.loads((npm_folder / "node_modules" / package / "package.json").read_text())
        versions[package] = record["version"]
    return versions


def build_site(variants: list[AppVariant], out: Path = DEFAULT_SITE, export_root: Path = Path("export"),
               npm_folder: Path = NPM_FOLDER) -> dict:
    check_writable(out.parent)
    runtimes = runtime_files(npm_folder)  # before any export: a missing runtime is found in a second
    folders = [ensure_export(v, export_root, WEB_RUNTIMES) for v in variants]
    manifests = [open_export(folder) for folder in folders]  # the gate, before anything is copied
    for folder, manifest in zip(folders, manifests):
        if not any(a.format in WEB_RUNTIMES for a in manifest.artifacts):
            raise UsageError(f"{folder} has no ONNX or TFLite model; re-export it with --formats onnx,tflite")
    images = golden_images()
    with atomic_folder(out, replace=True) as work:
        for name in PAGE_FILES:
            source = PAGE_SOURCE / name
            (shutil.copytree if source.is_dir() else shutil.copyfile)(source, work / name)
        for source, target in runtimes:
            (work / target).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, work / target)
        (work / "golden").mkdir()
        catalog = {"schema": CATALOG_SCHEMA, "runtimes": _package_versions(npm_folder), "variants": [],
                   "golden": {"images": [], "results": []}}
        for name, image, source in images:
            image.save(work / "golden" / name)
            catalog["golden"]["images"].append({"name": name, "file": f"golden/{name}", "source": source,
                                                "width": image.width, "height": image.height})
        for folder, manifest in zip(folders, manifests):
            catalog["variants"].append(_bundle_variant(work, folder, manifest, images, catalog["golden"]["results"]))
        (work / "catalog.json").write_text(json.dumps(catalog, indent=1) + "\n")
    return catalog


def _bundle_variant(work: Path, folder: Path, manifest, images, results: list) -> dict:
    variant = manifest.variant
    (work / "models" / variant).mkdir(parents=True)
    labels = f"models/{variant}/labels.txt"
    shutil.copyfile(folder / manifest.labels, work / labels)
    entry = {"variant": variant, "model": manifest.model, "alpha": manifest.alpha,
             "resolution": manifest.resolution, "numClasses": manifest.num_classes, "labels": labels,
             "weights": manifest.weights.source,
             "preprocessing": {"cropFraction": manifest.crop_fraction, "color": manifest.preprocessing["color"]},
             "files": []}
    for record in (a for a in manifest.artifacts if a.format in WEB_RUNTIMES):
        target = f"models/{variant}/{Path(record.path).name}"
        shutil.copyfile(folder / record.path, work / target)
        key = f"{variant}/{Path(record.path).name}"
        entry["files"].append({"key": key, "file": target, "format": record.format, "precision": record.precision,
                               "runtime": WEB_RUNTIMES[record.format], "sha256": record.sha256,
                               "bytes": record.bytes, "input": tensor_spec(record.input),
                               "output": tensor_spec(record.output)})
        for name, image, _ in images:
            pixels = preprocess(image, manifest.resolution, manifest.crop_fraction)
            tensor, raw, logits = golden_tensors(record, work / target, pixels)
            stem = f"golden/{variant}_{Path(record.path).name.replace('.', '_')}_{Path(name).stem}"
            (work / f"{stem}.input.bin").write_bytes(little_endian_bytes(tensor))
            (work / f"{stem}.output.bin").write_bytes(little_endian_bytes(raw))
            indices, scores = top_k(logits)
            results.append({"key": key, "image": name, "inputTensor": f"{stem}.input.bin",
                            "outputTensor": f"{stem}.output.bin", "top5": indices, "top5Scores": scores})
    return entry
