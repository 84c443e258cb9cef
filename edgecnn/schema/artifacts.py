"""An artifact as the manifest lists it: the file, its hash and size, its I/O contract, or why it was refused."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from edgecnn.schema.details import ArtifactDetails
from edgecnn.schema.enums import FormatName, Precision
from edgecnn.schema.inputs import InputEncoding
from edgecnn.schema.quantization import Quantization


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of an artifact, as an app must feed or read it."""

    name: str
    shape: list[Union[int, str]]  # "batch" for a dynamic batch axis
    dtype: str  # float32 | int8 | image (Core ML ImageType)
    values: str  # what the numbers mean, in words
    layout: Optional[str] = None
    quantization: Optional[Quantization] = None
    encoding: Optional[InputEncoding] = None  # int8 image inputs: the lookup table from 0..255 pixels to codes


@dataclass(frozen=True)
class Refusal:
    """A precision a format could not produce for this model, and why; its other precisions are kept."""

    format: FormatName
    precision: Precision
    path: str  # the file it would have been
    reason: str
    kept: Optional[str] = None  # where a file made but failing its check is kept, as rejected (inside the export)
    details: Optional[ArtifactDetails] = None  # a kept file's record (e.g. the int8 repair it went through)

    def line(self) -> str:
        kept = f"; kept as {self.kept}" if self.kept else ""
        return f"{self.format} {self.precision} ({self.path}) refused: {self.reason}{kept}"


@dataclass(frozen=True)
class ArtifactRecord:
    """An artifact as the manifest lists it: the file, its hash and size, and its I/O contract."""

    format: FormatName
    precision: Precision
    path: str
    sha256: str
    bytes: int
    input: TensorSpec
    output: TensorSpec
    details: ArtifactDetails


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
