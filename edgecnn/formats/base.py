"""What a format is, and what it writes: the protocol every format module implements and the records it returns.

A format is one module (`edgecnn.formats.<name>`) and one `Format` entry in the table of
`edgecnn.formats`. The module provides:

- `export(job: ExportJob) -> list[Artifact | Refusal]`, writing files only inside `job.work_dir`
  (a `Refusal` is a precision it could not produce, recorded while the others are kept);
- `Runner(path, record, threads=0)`, with `.run(images_uint8_nhwc) -> logits` and the `engine` it runs on.

Everything else a consumer needs to know about the format (its files, platform, the converter it needs,
the runtime imported before a load is timed, whether it can be timed here and why not, the packages whose
versions an export records) is declared by its `Format` entry, not looked up in the module.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Optional, Protocol, runtime_checkable

from edgecnn.int8.request import Int8Network, Int8Request
from edgecnn.schema.artifacts import ArtifactRecord, Quantization, TensorSpec, sha256_of, size_of
from edgecnn.schema.contract import CONTRACT_SCHEMA, FileContract, contract_text
from edgecnn.schema.details import ArtifactDetails
from edgecnn.schema.enums import FormatName, Precision
from edgecnn.schema.inputs import InputEncoding, Preprocessing
from edgecnn.util.errors import UsageError

if TYPE_CHECKING:
    import numpy as np
    import torch


@dataclass
class Artifact:
    """One exported file (or Core ML package folder), as the format's exporter describes it."""

    format: FormatName
    precision: Precision
    path: str  # relative to the export folder
    input: TensorSpec
    output: TensorSpec
    details: ArtifactDetails  # converter facts: opset, operators, partitions, int8 repair...

    def record(self, root: Path) -> "ArtifactRecord":
        target = root / self.path
        return ArtifactRecord(
            self.format,
            self.precision,
            self.path,
            sha256_of(target),
            size_of(target),
            self.input,
            self.output,
            self.details,
        )


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
    int8: Int8Request = field(default_factory=Int8Request)  # the bound every int8 file is held to, and repair
    preprocessing: Optional[Preprocessing] = None  # the input rule, for the contract a file carries

    def network(self) -> Int8Network:
        """What the int8 engine makes int8 files from."""
        return Int8Network(self.model, self.backbone, self.calibration, self.mean, self.std)


def file_contract(job: ExportJob, precision: Precision, input: TensorSpec, output: TensorSpec) -> str:
    """The JSON a .tflite or .pte carries about itself (`edgecnn.schema.contract`)."""
    from importlib import metadata

    return contract_text(
        FileContract(
            CONTRACT_SCHEMA,
            job.variant,
            precision,
            list(job.labels),
            list(job.mean),
            list(job.std),
            job.preprocessing or Preprocessing(job.resolution),
            input,
            output,
            metadata.version("edgecnn"),
        )
    )


@runtime_checkable
class Runner(Protocol):
    engine: str  # what executes the artifact here, e.g. "LiteRT (XNNPACK)" or "MIL executor"
    emulated: bool  # True when `engine` is not the format's own runtime (Core ML off Apple platforms)

    def run(self, images: "np.ndarray") -> "np.ndarray": ...


@dataclass(frozen=True)
class Format:
    """One row of the format table: everything the CLI, export, harness and docs know about a format."""

    name: FormatName
    artifacts: tuple[tuple[Precision, str], ...]  # (precision, file name) of everything it writes
    platform: str
    module: str
    runtime: str  # imported before a load is timed or its memory measured (edgecnn.harness.probe)
    tools: tuple[str, ...]  # distributions whose versions an export with this format records
    timed_here: bool = True
    not_timed_reason: str = ""
    needs: Optional[str] = None  # importable package the converter needs
    extra: Optional[str] = None  # the pip extra that installs it

    def file(self, precision: Precision) -> str:
        """The file this format writes for `precision`: the one place file names are declared."""
        return dict(self.artifacts)[precision]

    def available(self) -> bool:
        return self.needs is None or importlib.util.find_spec(self.needs) is not None

    def load(self) -> ModuleType:
        if not self.available():
            raise UsageError(
                f"format {self.name} needs {self.needs}: pip install 'edgecnn[{self.extra}]' (make setup installs it)"
            )
        return importlib.import_module(self.module)

    def runner(self, path: Path, record: ArtifactRecord, threads: int = 0) -> Runner:
        return self.load().Runner(path, record, threads=threads)


def image_input(name: str, shape: list, layout: str, dtype: str = "float32") -> TensorSpec:
    return TensorSpec(name, shape, dtype, "RGB 0..255 (normalisation folded into the graph)", layout)


def int8_image_input(name: str, shape: list, layout: str, encoding: InputEncoding) -> TensorSpec:
    return TensorSpec(
        name,
        shape,
        "int8",
        "normalised RGB ((v / 255 - mean) / std) as int8 codes: map each channel's 0..255 value "
        "through encoding.lookup_table[channel]",
        layout,
        Quantization(encoding.scale, encoding.zero_point),
        encoding,
    )


def logits_output(
    name: str, shape: list, dtype: str = "float32", quantization: Optional[Quantization] = None
) -> TensorSpec:
    return TensorSpec(name, shape, dtype, "logits", quantization=quantization)
