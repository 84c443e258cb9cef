"""What a format's converter records about each file it wrote: one record per format, told apart by `format`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional, Union

from edgecnn.schema.enums import Metric, Precision
from edgecnn.schema.int8 import Int8Repair, Measured
from edgecnn.schema.quantization import Quantization

# what the int8 files' weights and activations are, in words, as the manifest says it
INT8_WEIGHTS = "int8 symmetric per-channel"
INT8_ACTIVATIONS = "int8 static, calibrated"


@dataclass(frozen=True)
class OnnxDetails:
    opset: int
    format: Literal["onnx"] = "onnx"


@dataclass(frozen=True)
class CoreMLDetails:
    compute: Precision  # what Core ML computes in
    deployment_target: str
    weights: Optional[str] = None  # how weights are stored, where not as computed
    format: Literal["coreml"] = "coreml"


class Int8FileFacts:
    """What the int8 files' records (TFLite, ExecuTorch) answer alike, from their repair and float-layer fields."""

    float_layers: list[str]
    target: Optional[str]
    measured: Optional[Measured]
    repair: Optional[Int8Repair]

    @property
    def pure_int8(self) -> bool:
        return not self.float_layers and not getattr(self, "float_operators", None)

    def measured_against(self, target: str, metric: Metric) -> Optional[float]:
        """What this file measured against the bound `target`: an int8-mixed file's own measurement, else
        its repair's final one; None where neither was of `metric`."""
        if self.target == target and self.measured is not None:
            return self.measured.value
        final = self.repair.final if self.repair is not None else None
        return final.measured.value if final is not None and final.measured.metric == metric else None


@dataclass(frozen=True)
class TFLiteDetails(Int8FileFacts):
    operators: dict[str, int]  # operator counts outside the XNNPACK delegate's view: the whole graph
    xnnpack_partitions: int  # pieces XNNPACK splits the graph into: 1 is one delegate call
    requantize_ops: int  # int8-to-int8 QUANTIZE (concat inputs of unlike scales): integer arithmetic
    weights: Optional[str] = None  # int8 files: how weights and activations are quantized
    activations: Optional[str] = None
    repair: Optional[Int8Repair] = None  # int8 files: what repair did on the way to the bound
    # int8-mixed only: the units left in float, and what the file measured against the bound
    float_layers: list[str] = field(default_factory=list)
    float_operators: Optional[int] = None
    target: Optional[str] = None
    measured: Optional[Measured] = None
    measured_on: Optional[str] = None
    format: Literal["tflite"] = "tflite"


@dataclass(frozen=True)
class ExecuTorchDetails(Int8FileFacts):
    backend: str
    xnnpack_partitions: int
    outside_delegate: dict[str, int]  # operators left outside XNNPACK, by edge operator name
    weights: Optional[str] = None
    activations: Optional[str] = None
    io: Optional[str] = None  # int8: how input and output are quantized
    repair: Optional[Int8Repair] = None  # int8: the bound it was held to and what was kept
    # int8-mixed only: the units left in float (run by XNNPACK in float), what it measured against the bound
    float_layers: list[str] = field(default_factory=list)
    target: Optional[str] = None
    measured: Optional[Measured] = None
    measured_on: Optional[str] = None
    format: Literal["executorch"] = "executorch"


# told apart by their `format` literal: a record parses as exactly one of them
ArtifactDetails = Union[OnnxDetails, CoreMLDetails, TFLiteDetails, ExecuTorchDetails]


@dataclass(frozen=True)
class TFLiteGraph:
    """What LiteRT says of a .tflite file once loaded: operators, float tensors, XNNPACK pieces, I/O."""

    operators: dict[str, int]
    float_operators: list[str]  # operators touching a float tensor (a pure int8 graph has none)
    xnnpack_partitions: int
    input_dtype: str
    output_dtype: str
    input_quantization: Optional[Quantization]
    output_quantization: Optional[Quantization]
    float_modules: list[str] = field(default_factory=list)  # the module path of each float operator, where named
