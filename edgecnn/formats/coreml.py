"""Core ML: an ML program (.mlpackage) computing in fp16 with an image input and fp32 logits out, and a
variant with int8 weights (weights only: activation quantization needs macOS to calibrate).

The input is an `ImageType` (RGB, scale 1, no bias): Vision and CVPixelBuffer feed it directly, and
the model normalises internally, so an iOS app passes the cropped, resized photo as is. Labels,
normalisation and the preprocessing rule travel in the model's metadata.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path

import numpy as np
import torch

from edgecnn.formats import FORMATS
from edgecnn.formats.base import Artifact, ArtifactRecord, ExportJob, image_input, logits_output
from edgecnn.schema.details import INT8_WEIGHTS, CoreMLDetails
from edgecnn.schema.enums import FormatName, Precision
from edgecnn.util import console
from edgecnn.util.interrupts import checkpoint

FP16_PACKAGE = FORMATS[FormatName.COREML].file(Precision.FP16)
W8_PACKAGE = FORMATS[FormatName.COREML].file(Precision.W8)
DEPLOYMENT_TARGET = "iOS16"  # the first with the ML program features the converter uses


def export(job: ExportJob) -> list[Artifact]:
    shape = (1, 3, job.resolution, job.resolution)
    with console.step("coreml fp16: converted"):
        mlmodel = convert(job.model, job.resolution, Precision.FP16)
        _describe(mlmodel, job)
        mlmodel.save(str(job.work_dir / FP16_PACKAGE))
    checkpoint()

    with console.step("coreml w8: weights quantized"):
        _write_w8(mlmodel, job)
    for package in (FP16_PACKAGE, W8_PACKAGE):  # converter debug output, not part of the model
        debug = job.work_dir / package / "executorch_debug_handle_mapping.json"
        debug.unlink(missing_ok=True)

    io = {
        "input": image_input("image", list(shape), "NCHW image (CVPixelBuffer RGB)", "image"),
        "output": logits_output("logits", [1, job.num_classes]),
    }
    return [
        Artifact(
            FormatName.COREML,
            Precision.FP16,
            FP16_PACKAGE,
            details=CoreMLDetails(Precision.FP16, DEPLOYMENT_TARGET),
            **io,
        ),
        Artifact(
            FormatName.COREML,
            Precision.W8,
            W8_PACKAGE,
            details=CoreMLDetails(Precision.FP16, DEPLOYMENT_TARGET, weights=f"{INT8_WEIGHTS} (weights only)"),
            **io,
        ),
    ]


def _write_w8(mlmodel, job: ExportJob) -> None:
    import coremltools.optimize as cto

    config = cto.coreml.OptimizationConfig(
        global_config=cto.coreml.OpLinearQuantizerConfig(
            mode="linear_symmetric", dtype="int8", granularity="per_channel"
        )
    )
    with np.errstate(divide="ignore", invalid="ignore"):  # all-zero channels (dead filters) have scale 0
        quantized = cto.coreml.linear_quantize_weights(mlmodel, config=config)
    _describe(quantized, job)
    quantized.save(str(job.work_dir / W8_PACKAGE))


def convert(model: torch.nn.Module, resolution: int, precision: Precision = Precision.FP16):
    """A raw-RGB model as an ML program with an RGB ImageType input and fp32 logits ("fp16" or "fp32" compute)."""
    import coremltools as ct

    shape = (1, 3, resolution, resolution)
    program = torch.export.export(model, (torch.zeros(shape),)).run_decompositions({})
    return ct.convert(
        program,
        convert_to="mlprogram",
        minimum_deployment_target=ct.target.iOS16,
        compute_precision={Precision.FP16: ct.precision.FLOAT16, Precision.FP32: ct.precision.FLOAT32}[precision],
        inputs=[ct.ImageType(name="image", shape=shape, color_layout=ct.colorlayout.RGB, scale=1.0)],
        outputs=[ct.TensorType(name="logits", dtype=np.float32)],
    )


def _describe(mlmodel, job: ExportJob) -> None:
    mlmodel.short_description = f"edgecnn {job.variant}: image classifier, logits out"
    mlmodel.input_description["image"] = "RGB image, center-cropped and resized as the metadata says"
    mlmodel.output_description["logits"] = "class logits (softmax for probabilities)"
    meta = mlmodel.user_defined_metadata
    for key, value in {**job.metadata, "labels": json.dumps(job.labels)}.items():
        meta[key] = value


class Runner:
    """Real Core ML prediction on macOS; elsewhere the saved program runs in edgecnn's MIL executor
    (PyTorch kernels, fp16 storage emulated), since coremltools cannot predict there."""

    def __init__(self, path: Path, record: ArtifactRecord, threads: int = 0) -> None:
        self.native = platform.system() == "Darwin"
        self.emulated = not self.native
        self.engine = "Core ML (CPU)" if self.native else "MIL executor"
        if self.native:
            import coremltools as ct

            self.model = ct.models.MLModel(str(path), compute_units=ct.ComputeUnit.CPU_ONLY)
        else:
            from edgecnn.formats.mil_executor import MilProgram

            self.program = MilProgram(path)

    def run(self, images: np.ndarray) -> np.ndarray:
        if self.native:
            from PIL import Image

            return np.stack([self.model.predict({"image": Image.fromarray(image)})["logits"][0] for image in images])
        return self.program.run({"image": images.transpose(0, 3, 1, 2).astype(np.float32)})["logits"]
