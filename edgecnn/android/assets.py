"""`make android-assets`: the Android demo's assets from export folders, with golden files for the Java core.

For every requested variant (`model:alpha:resolution[:weights]`) the export is made if it is missing
(TFLite and ExecuTorch), checked against its manifest, and its .tflite and .pte files and labels are copied
into the app's assets with `catalog.json` (edgecnn.apps.catalog, the schema the web page reads too). For the
golden image, Python writes the exact input tensor each model takes, the raw output its runtime (LiteRT, or
ExecuTorch) gives for it and the top-5: the Java core must reproduce the first byte for byte and the last
from the second, and the app's self-test compares its own top-5 with it.
The assets folder is replaced only when complete.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from edgecnn.apps.catalog import AppTarget, open_app_exports, write_bundle
from edgecnn.apps.golden import AppVariant
from edgecnn.schema.catalog import AppCatalog
from edgecnn.schema.enums import FormatName
from edgecnn.util.atomic import atomic_folder, check_writable

DEFAULT_ASSETS = Path("android_demo/app/src/main/assets")
# one golden image: the self-test and benchmark on a phone run it, and every image is APK size
ANDROID = AppTarget(
    runtimes={FormatName.TFLITE: "litert", FormatName.EXECUTORCH: "executorch"}, golden_images=("chelsea.png",)
)


def build_assets(
    variants: list[AppVariant], assets: Path, export_root: Path = Path("export"), folders: Sequence[Path] = ()
) -> AppCatalog:
    """The app's assets for existing export `folders` and `variants` (exported under `export_root` if missing)."""
    check_writable(assets.parent)
    exports = open_app_exports(
        variants, export_root, ANDROID, folders
    )  # export and gate first: nothing written on failure
    with atomic_folder(assets, replace=True) as work:
        return write_bundle(work, exports, ANDROID)
