"""One catalog builder for both apps: model files, labels, golden images and tensors, and `catalog.json`.

An app says what it takes (`AppTarget`): the formats it runs, with which runtime, and which golden images it
checks. For every variant the export is made if it is missing and checked by the gate; its model files of
those formats and its labels are copied into the bundle. For each golden image and model file, Python writes
the exact input tensor, the raw output of the file in its own runtime and the top-5 (edgecnn.apps.golden).
The catalog follows `edgecnn.schema.catalog`, the same for the Android app and the web page.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

from PIL import Image

from edgecnn.apps.golden import AppVariant, ensure_export, golden_tensors, little_endian_bytes, top_k
from edgecnn.data.photos import SKIMAGE
from edgecnn.data.preprocess import load_image, preprocess
from edgecnn.schema.artifacts import ArtifactRecord, TensorSpec
from edgecnn.schema.catalog import (
    CATALOG_FILE,
    CATALOG_SCHEMA,
    AppCatalog,
    AppTensor,
    CatalogVariant,
    Golden,
    GoldenImage,
    GoldenResult,
    ModelFile,
    Preprocessing,
    catalog_json,
)
from edgecnn.schema.enums import FormatName
from edgecnn.schema.manifest import Manifest, open_export
from edgecnn.util.errors import UsageError


@dataclass(frozen=True)
class AppTarget:
    """What an app takes: the formats it runs (each with the runtime it runs it with) and its golden images."""

    runtimes: dict[FormatName, str]
    golden_images: tuple[str, ...]  # names in GOLDEN_IMAGES; the first is the one the app's self-test runs

    def takes(self, record: ArtifactRecord) -> bool:
        return record.format in self.runtimes


def _skimage(name: str) -> Image.Image:
    return load_image(SKIMAGE.paths()[SKIMAGE.files.index(name)])


# name -> (the image, its source in words): lossless PNG, so that every decoder sees the pixels PIL saw;
# landscape (451x300) and portrait (267x400)
GOLDEN_IMAGES: dict[str, tuple[Callable[[], Image.Image], str]] = {
    "chelsea.png": (lambda: _skimage("chelsea.png"), "scikit-image chelsea.png"),
    "coffee-portrait.png": (
        lambda: _skimage("coffee.png").crop((180, 0, 447, 400)),
        "scikit-image coffee.png, columns 180..446",
    ),
}


def open_app_exports(
    variants: list[AppVariant], export_root: Path, target: AppTarget, folders: Sequence[Path] = ()
) -> list[tuple[Path, Manifest]]:
    """The given export folders, then each variant's (exported if missing), with their manifests, through the gate,
    before anything is written; an export without a format the app takes is refused."""
    if not folders and not variants:
        raise UsageError("no exports given: name export folders (or ids under --export-root), or --variants")
    folders = [*folders, *(ensure_export(v, export_root, target.runtimes) for v in variants)]
    resolved = [f.resolve() for f in folders]
    if len(set(resolved)) != len(resolved):
        raise UsageError(
            f"an export is listed twice: {', '.join(sorted({str(f) for f in resolved if resolved.count(f) > 1}))}"
        )
    manifests = [open_export(folder) for folder in folders]
    formats = [str(f) for f in target.runtimes]
    for folder, manifest in zip(folders, manifests):
        if not any(target.takes(a) for a in manifest.artifacts):
            raise UsageError(
                f"{folder} has no {' or '.join(formats)} model; re-export it with --formats {','.join(formats)}"
            )
    return list(zip(folders, manifests))


def write_bundle(
    work: Path, exports: list[tuple[Path, Manifest]], target: AppTarget, runtimes: Optional[dict[str, str]] = None
) -> AppCatalog:
    """Model files, labels, golden files and catalog.json into `work` (an app's bundle being made)."""
    (work / "golden").mkdir(parents=True)
    images = []
    for name in target.golden_images:
        make, source = GOLDEN_IMAGES[name]
        image = make()
        image.save(work / "golden" / name)
        images.append((GoldenImage(name, f"golden/{name}", source, image.width, image.height), image))
    results: list[GoldenResult] = []
    variants = [_bundle_variant(work, folder, manifest, target, images, results) for folder, manifest in exports]
    catalog = AppCatalog(CATALOG_SCHEMA, variants, Golden([g for g, _ in images], results), runtimes or {})
    (work / CATALOG_FILE).write_text(json.dumps(catalog_json(catalog), indent=1) + "\n")
    return catalog


def _bundle_variant(
    work: Path,
    folder: Path,
    manifest: Manifest,
    target: AppTarget,
    images: Sequence[tuple[GoldenImage, Image.Image]],
    results: list[GoldenResult],
) -> CatalogVariant:
    variant = manifest.variant
    (work / "models" / variant).mkdir(parents=True)
    labels = f"models/{variant}/labels.txt"
    shutil.copyfile(folder / manifest.labels, work / labels)
    pixels = {g.name: preprocess(image, manifest.resolution, manifest.crop_fraction) for g, image in images}
    files = []
    for record in (a for a in manifest.artifacts if target.takes(a)):
        name = Path(record.path).name
        model_file = ModelFile(
            key=f"{variant}/{name}",
            file=f"models/{variant}/{name}",
            format=record.format,
            precision=record.precision,
            runtime=target.runtimes[record.format],
            sha256=record.sha256,
            bytes=record.bytes,
            input=app_tensor(record.input),
            output=app_tensor(record.output),
        )
        shutil.copyfile(folder / record.path, work / model_file.file)
        files.append(model_file)
        for golden, _ in images:
            tensor, raw, logits = golden_tensors(record, work / model_file.file, pixels[golden.name])
            stem = f"golden/{variant}_{name.replace('.', '_')}_{Path(golden.name).stem}"
            (work / f"{stem}.input.bin").write_bytes(little_endian_bytes(tensor))
            (work / f"{stem}.output.bin").write_bytes(little_endian_bytes(raw))
            indices, scores = top_k(logits)
            results.append(
                GoldenResult(model_file.key, golden.name, f"{stem}.input.bin", f"{stem}.output.bin", indices, scores)
            )
    return CatalogVariant(
        variant=variant,
        model=manifest.model,
        alpha=manifest.alpha,
        resolution=manifest.resolution,
        num_classes=manifest.num_classes,
        labels=labels,
        weights=manifest.weights.source,
        preprocessing=Preprocessing(manifest.crop_fraction, manifest.preprocessing.color),
        files=files,
        trained=manifest.weights.trained,
    )


def app_tensor(spec: TensorSpec) -> AppTensor:
    """A manifest's tensor as the apps feed it: batch 1 (an ONNX file names its batch axis), quantization and
    the int8 lookup table spelled out."""
    q = spec.quantization
    return AppTensor(
        dtype=spec.dtype,
        shape=[size if isinstance(size, int) and size > 0 else 1 for size in spec.shape],
        layout=spec.layout,
        scale=None if q is None else q.scale,
        zero_point=None if q is None else q.zero_point,
        lookup_table=spec.encoding.lookup_table if spec.encoding else None,
    )
