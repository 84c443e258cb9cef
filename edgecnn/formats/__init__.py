"""The table of export formats. It drives the CLI's choices, argument checks, the export loop, the harness
(runners, which formats are timed here) and the docs. Adding a format means one module implementing the
protocol of `edgecnn.formats.base` and one entry here."""

from __future__ import annotations

import platform
from importlib import metadata

from edgecnn.formats.base import (
    Artifact,
    ExportJob,
    Format,
    Runner,
    image_input,
    int8_image_input,
    logits_output,
)
from edgecnn.schema.artifacts import ArtifactRecord, Quantization, Refusal, TensorSpec, sha256_of, size_of
from edgecnn.schema.enums import FormatName, Precision
from edgecnn.util.errors import UsageError

FORMATS: dict[FormatName, Format] = {
    f.name: f
    for f in (
        Format(
            FormatName.ONNX,
            ((Precision.FP32, "model.onnx"),),
            "any: ONNX Runtime (desktop, server, Android, iOS)",
            "edgecnn.formats.onnx",
            runtime="onnxruntime",
            tools=("onnx", "onnxscript", "onnxruntime"),
        ),
        # int8-mixed: written only when int8 misses its bound and float for a few layers meets it
        Format(
            FormatName.TFLITE,
            (
                (Precision.FP32, "model_fp32.tflite"),
                (Precision.INT8, "model_int8.tflite"),
                (Precision.INT8_MIXED, "model_int8_mixed.tflite"),
            ),
            "Android / embedded: LiteRT (TFLite), XNNPACK CPU delegate",
            "edgecnn.formats.tflite",
            runtime="ai_edge_litert.interpreter",
            tools=("litert-torch", "ai-edge-litert", "torchao"),
            needs="litert_torch",
            extra=FormatName.TFLITE,
        ),
        # Off macOS the runner is the MIL executor, whose speed and memory say nothing about an Apple device.
        Format(
            FormatName.COREML,
            ((Precision.FP16, "model.mlpackage"), (Precision.W8, "model_w8.mlpackage")),
            "iOS / macOS: Core ML ML program (predicts on Apple platforms only)",
            "edgecnn.formats.coreml",
            runtime="coremltools",
            tools=("coremltools",),
            timed_here=platform.system() == "Darwin",
            not_timed_reason="Core ML predicts only on macOS/iOS; here the MIL executor checks numerics, not speed",
            needs="coremltools",
            extra=FormatName.COREML,
        ),
        Format(
            FormatName.EXECUTORCH,
            (
                (Precision.FP32, "model_fp32.pte"),
                (Precision.INT8, "model_int8.pte"),
                (Precision.INT8_MIXED, "model_int8_mixed.pte"),
            ),
            "Android / iOS: ExecuTorch (PyTorch's on-device runtime), XNNPACK CPU delegate",
            "edgecnn.formats.executorch",
            runtime="executorch.runtime",
            tools=("executorch", "torchao"),
            needs=FormatName.EXECUTORCH,
            extra=FormatName.EXECUTORCH,
        ),
    )
}

# what every export and report records beside each format's own tools
BASE_TOOLS = ("torch", "numpy", "pillow", "scikit-image")


def parse_formats(text: str) -> list[Format]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise UsageError("no format given; choose from " + ", ".join(FORMATS))
    unknown = [n for n in names if n not in FORMATS]
    if unknown:
        raise UsageError(f"unknown format {unknown[0]!r}; choose from {', '.join(FORMATS)}")
    return [FORMATS[FormatName(n)] for n in dict.fromkeys(names)]


def format_of(record: ArtifactRecord) -> Format:
    if record.format not in FORMATS:
        raise UsageError(f"artifact {record.path} has format {record.format!r}, which this edgecnn does not know")
    return FORMATS[record.format]


def tool_versions(formats: "list[Format] | None" = None) -> dict[str, str]:
    """Versions of edgecnn, Python, the base packages and the tools of `formats` (default: all)."""
    versions = {"edgecnn": metadata.version("edgecnn"), "python": platform.python_version()}
    for dist in BASE_TOOLS + tuple(t for f in (formats or FORMATS.values()) for t in f.tools):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return versions


__all__ = [
    "FORMATS",
    "Format",
    "Artifact",
    "ArtifactRecord",
    "ExportJob",
    "Quantization",
    "Refusal",
    "Runner",
    "TensorSpec",
    "image_input",
    "int8_image_input",
    "logits_output",
    "sha256_of",
    "size_of",
    "parse_formats",
    "format_of",
    "tool_versions",
]
