"""The table of export formats. It drives the CLI's choices, argument checks, the export loop and the docs.

Each format module provides `export(job) -> list[Artifact]` (writing files into `job.work_dir`) and
`Runner(artifact_path, artifact_record, threads)` with `.run(images_uint8_nhwc) -> logits`.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Optional

from edgecnn.util.errors import UsageError

if TYPE_CHECKING:
    import numpy as np
    import torch


@dataclass(frozen=True)
class Format:
    name: str
    artifacts: tuple[tuple[str, str], ...]  # (precision, file name) of everything it writes
    platform: str
    module: str
    needs: Optional[str] = None  # importable package the converter needs
    extra: Optional[str] = None  # the pip extra that installs it

    def load(self) -> ModuleType:
        if self.needs is not None and importlib.util.find_spec(self.needs) is None:
            raise UsageError(f"format {self.name} needs {self.needs}: pip install 'edgecnn[{self.extra}]' "
                             f"(make setup installs it)")
        return importlib.import_module(self.module)


FORMATS: dict[str, Format] = {
    "onnx": Format("onnx", (("fp32", "model.onnx"),), "any: ONNX Runtime (desktop, server, Android, iOS)",
                   "edgecnn.formats.onnx"),
    "tflite": Format("tflite", (("fp32", "model_fp32.tflite"), ("int8", "model_int8.tflite")),
                     "Android / embedded: LiteRT (TFLite), XNNPACK CPU delegate",
                     "edgecnn.formats.tflite", needs="litert_torch", extra="tflite"),
    "coreml": Format("coreml", (("fp16", "model.mlpackage"), ("w8", "model_w8.mlpackage")),
                     "iOS / macOS: Core ML ML program (predicts on Apple platforms only)",
                     "edgecnn.formats.coreml", needs="coremltools", extra="coreml"),
}


def parse_formats(text: str) -> list[Format]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise UsageError("no format given; choose from " + ", ".join(FORMATS))
    unknown = [n for n in names if n not in FORMATS]
    if unknown:
        raise UsageError(f"unknown format {unknown[0]!r}; choose from {', '.join(FORMATS)}")
    return [FORMATS[n] for n in dict.fromkeys(names)]


@dataclass
class ExportJob:
    """Everything a format's exporter needs; it writes only inside `work_dir`."""

    variant: str
    resolution: int
    num_classes: int
    model: "torch.nn.Module"  # raw RGB (N, 3, R, R) float 0..255 -> logits; normalisation inside
    backbone: "torch.nn.Module"  # the same network taking the normalised image ((x / 255 - mean) / std)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    calibration: "np.ndarray"  # (N, R, R, 3) uint8
    labels: list[str]
    metadata: dict[str, str]  # variant, normalisation, preprocessing: embedded where a format allows
    work_dir: Path


def image_input(name: str, shape: list, layout: str, dtype: str = "float32") -> dict:
    return {"name": name, "shape": shape, "dtype": dtype, "layout": layout, "quantization": None,
            "values": "RGB 0..255 (normalisation folded into the graph)"}


def int8_image_input(name: str, shape: list, layout: str, encoding: dict) -> dict:
    return {"name": name, "shape": shape, "dtype": "int8", "layout": layout,
            "quantization": {"scale": encoding["scale"], "zero_point": encoding["zero_point"]},
            "values": "normalised RGB ((v / 255 - mean) / std) as int8 codes: map each channel's 0..255 value "
                      "through encoding.lookup_table[channel]",
            "encoding": encoding}


def logits_output(name: str, shape: list, dtype: str = "float32", quantization: Optional[dict] = None) -> dict:
    return {"name": name, "shape": shape, "dtype": dtype, "quantization": quantization, "values": "logits"}


@dataclass
class Artifact:
    """One exported file (or Core ML package folder) as the manifest records it."""

    format: str
    precision: str
    path: str  # relative to the export folder
    input: dict
    output: dict
    details: dict

    def to_dict(self, root: Path) -> dict:
        target = root / self.path
        return {"format": self.format, "precision": self.precision, "path": self.path,
                "sha256": sha256_of(target), "bytes": size_of(target), "input": self.input,
                "output": self.output, **self.details}


def sha256_of(path: Path) -> str:
    """sha256 of a file; for a folder (an .mlpackage), of its files' relative paths and contents."""
    digest = hashlib.sha256()
    if path.is_dir():
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(str(f.relative_to(path)).encode() + b"\0")
            digest.update(hashlib.sha256(f.read_bytes()).digest())
    else:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def size_of(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size
