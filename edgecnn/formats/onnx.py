"""ONNX: float32, one file, dynamic batch, opset pinned, checked, run with ONNX Runtime."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import cast

import numpy as np
import onnx
import torch

from edgecnn.formats import FORMATS
from edgecnn.formats.base import Artifact, ArtifactRecord, ExportJob, image_input, logits_output
from edgecnn.schema.details import OnnxDetails
from edgecnn.schema.enums import FormatName, Precision

OPSET = 18
FILE = FORMATS[FormatName.ONNX].file(Precision.FP32)


def export(job: ExportJob) -> list[Artifact]:
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # e.g. "torchvision is not installed" notes
    path = job.work_dir / FILE
    sample = torch.from_numpy(job.calibration[:1]).permute(0, 3, 1, 2).float().contiguous()
    batch = torch.export.Dim("batch", min=1, max=1024)
    exported = torch.onnx.export(
        job.model,
        (sample,),
        input_names=["image"],
        output_names=["logits"],
        opset_version=OPSET,
        dynamo=True,
        external_data=False,
        dynamic_shapes={"x": {0: batch}},
        verbose=False,
    )
    # torch types the result Optional for the TorchScript exporter (dynamo=False), whose result is None
    program = cast(torch.onnx.ONNXProgram, exported)
    proto = program.model_proto
    proto.doc_string = f"edgecnn {job.variant}"
    del proto.metadata_props[:]
    for key, value in {**job.metadata, "labels": json.dumps(job.labels)}.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto, full_check=True)
    onnx.save_model(proto, path)
    return [
        Artifact(
            format=FormatName.ONNX,
            precision=Precision.FP32,
            path=FILE,
            input=image_input("image", ["batch", 3, job.resolution, job.resolution], "NCHW"),
            output=logits_output("logits", ["batch", job.num_classes]),
            details=OnnxDetails(OPSET),
        )
    ]


class Runner:
    engine = "ONNX Runtime (CPU)"
    emulated = False

    def __init__(self, path: Path, record: ArtifactRecord, threads: int = 0) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_name = record.input.name

    def run(self, images: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32)
        return self.session.run(None, {self.input_name: x})[0]
