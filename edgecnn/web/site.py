"""`edgecnn web-demo`: a static site that classifies with the exported models in a phone's browser.

For every requested variant (`model:alpha:resolution[:weights]`) the export is made if it is missing (ONNX
and TFLite), checked against its manifest, and its model files are copied into the site with the page
(package data, `edgecnn/web/page/`) and the two WebAssembly runtimes from the npm project of a checkout
(`web_demo/node_modules`; `--npm-folder` names another):
- fp32 ONNX in onnxruntime-web (WASM SIMD, threads where the page is cross-origin isolated);
- fp32 and int8 TFLite in LiteRT.js: the int8 file with its int8 input and output, as on a phone.
The model files, labels, golden files and `catalog.json` come from edgecnn.apps.catalog (the schema the
Android app reads too). For two golden images of different aspect ratios, Python writes per model file the
exact input tensor, the raw output of the same file in Python's runtime (ONNX Runtime, LiteRT) and the
top-5: the page must reproduce the first byte for byte and the last from its own output. The site folder
is replaced only when complete.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Sequence

from edgecnn.apps.catalog import AppTarget, open_app_exports, write_bundle
from edgecnn.apps.golden import AppVariant
from edgecnn.schema.catalog import AppCatalog
from edgecnn.schema.enums import FormatName
from edgecnn.util.atomic import atomic_folder, check_writable
from edgecnn.util.errors import UsageError

PAGE_SOURCE = Path(__file__).with_name("page")
# the npm project (package.json, node_modules, tools/selftest.mjs): not package data, since its packages are
# installed by npm; by default the checkout's, relative to where edgecnn runs
NPM_FOLDER = Path("web_demo")
DEFAULT_SITE = NPM_FOLDER / "site"
NPM_PACKAGES = ("onnxruntime-web", "@litertjs/core", "puppeteer-core")
PAGE_FILES = ("index.html", "style.css", "js")
# two golden images of different aspect ratios: the page's crop must agree with Python's in both
WEB = AppTarget(
    runtimes={FormatName.ONNX: "onnxruntime-web", FormatName.TFLITE: "litert.js"},
    golden_images=("chelsea.png", "coffee-portrait.png"),
)
# what the site needs of each npm package: (package folder, files or folders, where they go under vendor/)
RUNTIME_FILES = (
    (
        "onnxruntime-web/dist",
        ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm"),
        "onnxruntime-web",
    ),
    ("@litertjs/core/dist", ("index.js",), "litertjs/core"),
    ("@litertjs/wasm-utils/dist", ("index.js",), "litertjs/wasm-utils"),
    (
        "@litertjs/core/wasm",
        (
            "litert_wasm_internal.js",
            "litert_wasm_internal.wasm",
            "litert_wasm_threaded_internal.js",
            "litert_wasm_threaded_internal.wasm",
            "litert_wasm_compat_internal.js",
            "litert_wasm_compat_internal.wasm",
        ),
        "litertjs/wasm",
    ),
)


def missing_npm_packages(npm_folder: Path) -> UsageError:
    return UsageError(
        f"the web demo needs the npm packages {', '.join(NPM_PACKAGES)}, not found in {npm_folder}/"
        f"node_modules: run `npm ci` in a checkout's web_demo/ (make web-demo does) and pass "
        f"--npm-folder PATH/web_demo"
    )


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


def build_site(
    variants: list[AppVariant],
    out: Path = DEFAULT_SITE,
    export_root: Path = Path("export"),
    npm_folder: Path = NPM_FOLDER,
    folders: Sequence[Path] = (),
) -> AppCatalog:
    """The site for existing export `folders` and `variants` (exported under `export_root` if missing)."""
    check_writable(out.parent)
    runtimes = runtime_files(npm_folder)  # before any export: a missing runtime is found in a second
    exports = open_app_exports(variants, export_root, WEB, folders)  # export and gate before anything is copied
    with atomic_folder(out, replace=True) as work:
        for name in PAGE_FILES:
            source = PAGE_SOURCE / name
            (shutil.copytree if source.is_dir() else shutil.copyfile)(source, work / name)
        for source, target in runtimes:
            (work / target).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, work / target)
        return write_bundle(work, exports, WEB, _package_versions(npm_folder))
