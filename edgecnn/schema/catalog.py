"""The apps' catalog: one schema for the Android app and the web page (`catalog.json` beside the model files).

It lists the bundled variants, each model file as an app feeds and reads it, the golden images and what
Python computed for each (model file, golden image). Java's `dev.edgecnn.core.Catalog` and the page's
`js/app.js` read it; Python writes it with `catalog_json` and reads it back with `parse_catalog`. Keys are
camelCase in JSON (the readers' convention), snake_case here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import Any, Optional

from edgecnn.schema.enums import FormatName, Precision
from edgecnn.schema.reading import json_object, parse_record
from edgecnn.util.errors import UsageError

CATALOG_SCHEMA = "edgecnn.app-catalog/1"
CATALOG_FILE = "catalog.json"


def camel_case(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


# pydantic reads this off the stdlib dataclasses: JSON keys in camelCase, no key the schema does not name
_JSON_KEYS: Any = {"alias_generator": camel_case, "extra": "forbid"}


@dataclass(frozen=True)
class Preprocessing:
    """The rule from a decoded image to the model's pixels (edgecnn.data.preprocess)."""

    crop_fraction: float  # central square crop, of the shorter side
    color: str  # "RGB"
    __pydantic_config__ = _JSON_KEYS


@dataclass(frozen=True)
class AppTensor:
    """A model file's input or output as an app feeds or reads it: batch 1, every size a number."""

    dtype: str  # "int8" or "float32"
    shape: list[int]
    layout: Optional[str] = None  # inputs: "NHWC" or "NCHW"
    scale: Optional[float] = None  # quantized tensors: real = (code - zero_point) * scale
    zero_point: Optional[int] = None
    lookup_table: Optional[list[list[int]]] = None  # int8 inputs: the code of each 0..255 value, per RGB channel
    __pydantic_config__ = _JSON_KEYS


@dataclass(frozen=True)
class ModelFile:
    key: str  # unique in the catalog: "<variant id>/<file name>"
    file: str  # path in the app's bundle
    format: FormatName  # what an app chooses its runtime by
    precision: Precision
    runtime: str  # the runtime the catalog's app runs it with, in words (e.g. "litert", "onnxruntime-web")
    sha256: str
    bytes: int
    input: AppTensor
    output: AppTensor
    __pydantic_config__ = _JSON_KEYS


@dataclass(frozen=True)
class CatalogVariant:
    variant: str  # the export's variant id
    model: str
    alpha: float
    resolution: int
    num_classes: int
    labels: str  # path in the bundle: one class name per line
    weights: str  # in words
    preprocessing: Preprocessing
    files: list[ModelFile]
    trained: bool = True  # False: random weights, whose classes mean nothing (the apps say so)
    __pydantic_config__ = _JSON_KEYS


@dataclass(frozen=True)
class GoldenImage:
    name: str
    file: str  # path in the bundle: a lossless PNG, so that every decoder sees the pixels Python saw
    source: str  # where it comes from, in words
    width: int
    height: int
    __pydantic_config__ = _JSON_KEYS


@dataclass(frozen=True)
class GoldenResult:
    """What Python computed for one model file on one golden image, with the model's own runtime."""

    key: str  # the model file's
    image: str  # the golden image's name
    input_tensor: str  # path: the exact input bytes (int8 codes, or float32 little-endian)
    output_tensor: str  # path: the raw output, little-endian
    top5: list[int]  # class indices, best first
    top5_scores: list[float]  # softmax probabilities
    __pydantic_config__ = _JSON_KEYS


@dataclass(frozen=True)
class Golden:
    images: list[GoldenImage]  # the first is the one an app's self-test runs
    results: list[GoldenResult]
    __pydantic_config__ = _JSON_KEYS


@dataclass(frozen=True)
class AppCatalog:
    schema: str
    variants: list[CatalogVariant]
    golden: Golden
    runtimes: dict[str, str] = field(default_factory=dict)  # package -> version, where the build knows them
    __pydantic_config__ = _JSON_KEYS

    def model_files(self) -> list[ModelFile]:
        return [f for v in self.variants for f in v.files]


@cache
def catalog_adapter() -> Any:
    """The one pydantic TypeAdapter of the catalog, both ways (built on first use: pydantic is slow to import)."""
    from pydantic import TypeAdapter

    return TypeAdapter(AppCatalog)


def catalog_json(catalog: AppCatalog) -> dict[str, Any]:
    """The catalog as JSON-ready data: camelCase keys, absent optional fields left out (the page tests
    `=== undefined`)."""
    data: dict[str, Any] = catalog_adapter().dump_python(catalog, mode="json", by_alias=True, exclude_none=True)
    return data


def parse_catalog(text: str, where: str = CATALOG_FILE) -> AppCatalog:
    """A catalog.json checked against the dataclasses above; a file that does not fit is one line."""
    raw = json_object(text, where)
    if raw.get("schema") != CATALOG_SCHEMA:
        raise UsageError(f"{where} has schema {raw.get('schema')!r}; this edgecnn reads {CATALOG_SCHEMA!r}")
    return parse_record(AppCatalog, raw, where, CATALOG_SCHEMA)
