"""TFLite through litert-torch: a float32 model and a full-integer int8 model, both NHWC.

int8: the network without its normalisation -> torch.export (strict, batch 1) -> PT2E with symmetric
per-channel weights and static activations, calibrated on the calibration images, the input on the fixed
grid of `Int8InputEncoding` (apps normalise and quantize with one table lookup per pixel) -> LiteRT.
The result must be int8 end to end: int8 input and output, no float tensor on any operator and no
QUANTIZE/DEQUANTIZE; anything else fails the export. The number of pieces XNNPACK splits each graph into
is recorded: a fragmented graph is slow even when it is all int8.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
from collections import Counter
from pathlib import Path
from typing import Iterable, Optional, Union

import numpy as np
import torch

from edgecnn.data.preprocess import Int8InputEncoding
from edgecnn.formats import FORMATS, litert
from edgecnn.formats.base import Artifact, ExportJob, file_contract, image_input, int8_image_input, logits_output
from edgecnn.int8.engine import QuantizedGraph, make_int8
from edgecnn.int8.rules import edge_quantizer
from edgecnn.passes.aten import fp32_forms, int8_forms
from edgecnn.passes.modules import for_xnnpack
from edgecnn.schema.artifacts import ArtifactRecord, Quantization, Refusal
from edgecnn.schema.contract import CONTRACT_KEY
from edgecnn.schema.details import INT8_ACTIVATIONS, INT8_WEIGHTS, TFLiteDetails, TFLiteGraph
from edgecnn.schema.enums import FormatName, Precision
from edgecnn.schema.int8 import Int8Repair, Measured
from edgecnn.util import console
from edgecnn.util.errors import ExportError
from edgecnn.util.interrupts import checkpoint

FP32_FILE = FORMATS[FormatName.TFLITE].file(Precision.FP32)
INT8_FILE = FORMATS[FormatName.TFLITE].file(Precision.INT8)


def _quiet():
    # litert-torch prints a progress tree per stage; keep the console to our own progress lines.
    return contextlib.redirect_stdout(io.StringIO())


@contextlib.contextmanager
def _converter_errors(precision: str):
    """The LiteRT converter reports a graph it cannot lower as a ValueError with MLIR diagnostics: one
    line of it, as an export failure (DenseNet-121's int8 graph was one, before its concatenations shared
    one scale)."""
    try:
        yield
    except ValueError as err:
        lines = [line.strip() for line in str(err).splitlines() if "error:" in line] or [str(err).strip()]
        detail = lines[0].split("error:", 1)[-1].strip()
        raise ExportError(f"the LiteRT converter cannot build the {precision} TFLite model: {detail[:300]}") from None


def export(job: ExportJob) -> list[Union[Artifact, Refusal]]:
    """The float model, then the int8 one. An int8 graph the converter cannot build, or one that is not
    pure int8, is refused on its own: the float model is still written."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # the converter's C++ info lines
    written: list[Union[Artifact, Refusal]] = [export_fp32(job)]
    try:
        written += export_int8_to_target(job)
    except ExportError as err:
        for name in (
            INT8_FILE,
            REPAIR_CANDIDATE,
            BEFORE_REPAIR,
            MIXED_FILE,
            _STRICT_FILE,
        ):  # a refused graph is not left as if it were one
            (job.work_dir / name).unlink(missing_ok=True)
        written.append(Refusal(FormatName.TFLITE, Precision.INT8, INT8_FILE, str(err)))
    for artifact in written:  # each file says what it takes and means, once it has left the folder
        if isinstance(artifact, Artifact):
            contract = file_contract(job, artifact.precision, artifact.input, artifact.output)
            litert.write_metadata(job.work_dir / artifact.path, CONTRACT_KEY, contract.encode())
    return written


def export_fp32(job: ExportJob) -> Artifact:
    import litert_torch

    sample = (torch.from_numpy(job.calibration[:1]).float(),)
    model = litert_torch.to_channel_last_io(for_xnnpack(job.model, sample[0].permute(0, 3, 1, 2)), args=[0]).eval()
    with console.step("tflite fp32: converted"), _quiet(), _converter_errors("fp32"):
        # the graph litert-torch would trace itself, with its padded max pools rewritten; non-strict, as
        # litert-torch traces (5x faster than strict here: 0.6 s against 3.4 s on mobilenet_v2 alpha 0.5)
        exported = torch.export.export(model, sample, strict=False).module()
        fp32_forms(exported, pad_max_pools=True)
        mark_inference_graph(exported)
        litert_torch.convert(exported, sample).export(str(job.work_dir / FP32_FILE))
    graph = inspect_graph(job.work_dir / FP32_FILE)
    return Artifact(
        FormatName.TFLITE,
        Precision.FP32,
        FP32_FILE,
        image_input("image", _shape(job), "NHWC"),
        logits_output("logits", [1, job.num_classes]),
        _graph_details(graph),
    )


def _shape(job: ExportJob) -> list[int]:
    return [1, job.resolution, job.resolution, 3]


REPAIR_CANDIDATE = ".model_int8_repaired.tflite"
BEFORE_REPAIR = ".model_int8_before_repair.tflite"  # read by the validation's before/after, then removed
MIXED_FILE = FORMATS[FormatName.TFLITE].file(Precision.INT8_MIXED)
MIXED_PRECISION = Precision.INT8_MIXED
_STRICT_FILE = ".model_int8_mixed_float_io.tflite"


def litert_logits(
    path: Path, images: np.ndarray, encoding: Int8InputEncoding, reference_kernels: bool = False
) -> np.ndarray:
    """Dequantized logits of an int8-input TFLite file on uint8 NHWC `images`, one at a time, run as a phone
    runs it (XNNPACK) or, with `reference_kernels`, by LiteRT's built-in kernels alone."""
    interpreter = litert.interpreter(path, threads=1, reference_kernels=reference_kernels)
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    scale, zero_point = out["quantization"]
    logits = []
    for image in images:
        interpreter.set_tensor(inp["index"], encoding.encode(image[None]))
        interpreter.invoke()
        logits.append((interpreter.get_tensor(out["index"])[0].astype(np.float64) - zero_point) * scale)
    return np.stack(logits)


@dataclasses.dataclass
class _MixedWriter:
    """`model_int8_mixed.tflite`: int8 with float units, int8 input and output."""

    job: ExportJob
    file: str = MIXED_FILE

    def write(self, quantized: QuantizedGraph, float_units: list[str]) -> Artifact:
        return export_mixed(self.job, quantized, float_units)

    def recorded(self, made: Artifact, repair: Int8Repair, target: str, measured: Measured) -> Artifact:
        details = dataclasses.replace(
            _tflite_details(made), target=target, measured=measured, measured_on=repair.measured_on, repair=repair
        )
        return dataclasses.replace(made, details=details)


@dataclasses.dataclass
class Int8FileWriter:
    """What the int8 engine (`edgecnn.int8.engine`) needs from TFLite: PT2E with litert-torch's quantizer,
    the converter, the purity check and LiteRT's run of a file."""

    job: ExportJob
    label: str = "tflite"
    int8_file: str = INT8_FILE
    candidate_file: str = REPAIR_CANDIDATE
    before_repair_file: Optional[str] = BEFORE_REPAIR

    def __post_init__(self) -> None:
        self.work_dir = self.job.work_dir
        self.mixed = _MixedWriter(self.job)
        self.encoding = Int8InputEncoding.for_normalization(self.job.mean, self.job.std)

    def quantize(
        self, backbone: torch.nn.Module, float_units: Iterable[str] = (), any_batch: bool = False
    ) -> QuantizedGraph:
        return quantize(self.job, backbone, float_units, any_batch)

    def write(self, quantized: QuantizedGraph, file: str) -> Artifact:
        return _written_int8(self.job, quantized, file)

    def logits(self, made: Artifact, images: np.ndarray) -> np.ndarray:
        return litert_logits(self.work_dir / made.path, images, self.encoding)

    def path_of(self, made: Artifact) -> str:
        return made.path

    def renamed(self, made: Artifact, file: str) -> Artifact:
        return dataclasses.replace(made, path=file)

    def with_repair(self, made: Artifact, repair: Int8Repair) -> Artifact:
        return dataclasses.replace(made, details=dataclasses.replace(_tflite_details(made), repair=repair))


def export_int8_to_target(job: ExportJob) -> list[Artifact]:
    """The int8 model held to the job's bound by the int8 engine (`edgecnn.int8.engine`), and where a bound
    the user stated is still missed, `model_int8_mixed.tflite` beside it."""
    made = make_int8(Int8FileWriter(job), job.network(), job.int8)
    return [made.int8] + ([made.mixed] if made.mixed is not None else [])


def _tflite_details(artifact: Artifact) -> TFLiteDetails:
    if not isinstance(artifact.details, TFLiteDetails):
        raise TypeError(f"{artifact.path} carries {type(artifact.details).__name__}, not TFLiteDetails")
    return artifact.details


WRAPPER_PREFIX = "wrapped."  # litert_torch.to_channel_last_io keeps the network as its `wrapped` attribute


def quantize(
    job: ExportJob, backbone: "torch.nn.Module | None" = None, float_units: Iterable[str] = (), any_batch: bool = False
) -> QuantizedGraph:
    """Export, annotate, calibrate and convert the network with PT2E; `float_units` left unquantized.

    `any_batch`: the graph takes any batch size, for simulating many images at once (it is never
    converted: the TFLite files have batch 1). Calibration still feeds one image at a time, in the same
    order, so its scales are the batch-1 graph's."""
    import litert_torch
    from litert_torch.quantize import pt2e_quantizer
    from torchao.quantization.pt2e import quantize_pt2e

    encoding = Int8InputEncoding.for_normalization(job.mean, job.std)
    normalized = [torch.from_numpy(encoding.decode(encoding.encode(image[None]))) for image in job.calibration]
    network = for_xnnpack(job.backbone if backbone is None else backbone, normalized[0].permute(0, 3, 1, 2))
    int8_model = litert_torch.to_channel_last_io(network, args=[0]).eval()
    from litert_torch.quantize import pt2e_quantizer_utils

    quantizer = edge_quantizer(
        pt2e_quantizer.PT2EQuantizer, pt2e_quantizer_utils, encoding, network, frozenset(float_units), WRAPPER_PREFIX
    ).set_global(pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=True))
    # strict export: non-strict tracing silently leaves residual adds in float (docs/architecture.md)
    dynamic = {"args": ({0: torch.export.Dim("batch", min=1, max=1024)},)} if any_batch else None
    # an example of batch 2: torch.export fixes any axis whose example size is 1
    example = torch.cat([normalized[0]] * 2) if any_batch else normalized[0]
    graph = torch.export.export(int8_model, (example,), strict=True, dynamic_shapes=dynamic).module()
    int8_forms(graph)
    graph = quantize_pt2e.prepare_pt2e(graph, quantizer)
    with torch.no_grad():
        for image in console.track(normalized, f"tflite int8: calibrated on {len(normalized)} images"):
            checkpoint()  # batch 1: the graph's shapes are static
            graph(image)
    graph = quantize_pt2e.convert_pt2e(graph, fold_quantize=False)
    mark_inference_graph(graph)
    return QuantizedGraph(graph, quantizer, normalized[0], network, encoding, WRAPPER_PREFIX, channels_last=True)


def _convert(quantized: QuantizedGraph, path: Path, precision: Precision = Precision.INT8) -> None:
    import litert_torch
    from litert_torch.quantize.quant_config import QuantConfig

    with console.step(f"tflite {precision}: converted"), _quiet(), _converter_errors(precision):
        litert_torch.convert(
            quantized.graph, (quantized.sample,), quant_config=QuantConfig(pt2e_quantizer=quantized.quantizer)
        ).export(str(path))


@contextlib.contextmanager
def _strict_qdq():
    """The LiteRT converter in strict QDQ mode, where an operator left unquantized stays float.

    In the default mode the converter quantizes a float operator between int8 neighbours anyway, from
    the scales around it (measured: a conv left out of the quantizer came out as an int8 CONV_2D).
    litert_torch.convert takes no option for the mode, so its config constructor is wrapped for the call.
    """
    from litert_torch._convert import litert_converter

    original = litert_converter.converter_api_ext

    class _StrictConfig:
        def __getattr__(self, name):
            return getattr(original, name)

        @staticmethod
        def ConvertToTFLConfig():  # noqa: N802 (the converter's own name)
            config = original.ConvertToTFLConfig()
            config.strict_qdq_mode = True
            return config

    litert_converter.converter_api_ext = _StrictConfig()
    try:
        yield
    finally:
        litert_converter.converter_api_ext = original


def export_mixed(job: ExportJob, quantized: QuantizedGraph, float_units: list[str]) -> Artifact:
    """int8 with `float_units` in float (as `quantized` leaves them): int8 input and output, float operators
    only inside those units."""
    from ai_edge_litert import _pywrap_modify_model_interface as interface

    strict = job.work_dir / _STRICT_FILE
    with _strict_qdq():
        _convert(quantized, strict, MIXED_PRECISION)
    # strict mode keeps float graph I/O behind a QUANTIZE and a DEQUANTIZE; this drops them (int8 = 9)
    try:
        status = interface.modify_model_interface(str(strict), str(job.work_dir / MIXED_FILE), 9, 9)
    finally:
        strict.unlink(missing_ok=True)
    if status != 0:
        raise ExportError(f"LiteRT could not give {MIXED_FILE} int8 input and output (status {status})")
    graph = inspect_graph(job.work_dir / MIXED_FILE)
    if graph.input_dtype != "int8" or graph.output_dtype != "int8":
        raise ExportError(f"{MIXED_FILE} has {graph.input_dtype}/{graph.output_dtype} I/O, not int8/int8")
    _check_input_encoding(graph, quantized.encoding)
    return Artifact(
        FormatName.TFLITE,
        MIXED_PRECISION,
        MIXED_FILE,
        int8_image_input("image", _shape(job), "NHWC", quantized.encoding.to_record()),
        logits_output("logits", [1, job.num_classes], "int8", _output_quantization(graph)),
        dataclasses.replace(
            _graph_details(graph),
            weights=f"{INT8_WEIGHTS}, float in the float layers",
            activations=f"{INT8_ACTIVATIONS}; float inside the float layers",
            float_layers=list(float_units),
            float_operators=len(graph.float_operators),
        ),
    )


def _output_quantization(graph: TFLiteGraph) -> Quantization:
    if graph.output_quantization is None:
        raise ExportError("the int8 TFLite output carries no quantization")
    return graph.output_quantization


def _check_input_encoding(graph: TFLiteGraph, encoding: Int8InputEncoding) -> None:
    if graph.input_quantization != Quantization(encoding.scale, encoding.zero_point):
        raise ExportError(
            f"int8 TFLite input quantization {graph.input_quantization} is not the fixed "
            f"input encoding (scale {encoding.scale}, zero point {encoding.zero_point})"
        )


def export_int8(
    job: ExportJob, backbone: "torch.nn.Module | None" = None, file: str = INT8_FILE
) -> tuple[Artifact, QuantizedGraph]:
    quantized = quantize(job, backbone)
    return _written_int8(job, quantized, file), quantized


def _written_int8(job: ExportJob, quantized: QuantizedGraph, file: str) -> Artifact:
    _convert(quantized, job.work_dir / file)
    int8_graph = inspect_graph(job.work_dir / file)
    check_pure_int8(int8_graph)
    _check_input_encoding(int8_graph, quantized.encoding)
    encoding = quantized.encoding
    return Artifact(
        FormatName.TFLITE,
        Precision.INT8,
        file,
        int8_image_input("image", _shape(job), "NHWC", encoding.to_record()),
        logits_output("logits", [1, job.num_classes], "int8", _output_quantization(int8_graph)),
        dataclasses.replace(_graph_details(int8_graph), weights=INT8_WEIGHTS, activations=INT8_ACTIVATIONS),
    )


# aten ops whose last argument says whether they compute in training mode
_MODE_OPS = {
    "aten.batch_norm.default": 5,
    "aten._native_batch_norm_legit.default": 5,
    "aten.dropout.default": 2,
    "aten.native_dropout.default": 2,
}
_TRAINING_ONLY = {"aten._native_batch_norm_legit_functional.default"}  # updates running stats: training


def training_mode_ops(graph: torch.fx.GraphModule) -> list[str]:
    """Operators of an exported graph that compute in training mode (batch statistics, active dropout)."""
    found = []
    for node in graph.graph.nodes:
        name = str(node.target)
        if node.op != "call_function":
            continue
        if name in _TRAINING_ONLY:
            found.append(f"{node.name} ({name})")
        elif name in _MODE_OPS and len(node.args) > _MODE_OPS[name] and node.args[_MODE_OPS[name]] is True:
            found.append(f"{node.name} ({name}, training=True)")
    return found


def mark_inference_graph(graph: torch.fx.GraphModule) -> None:
    """Clear the `training` flag of a converted PT2E graph, after checking that it computes in eval mode.

    `torch.export(...).module()` builds a new GraphModule whose flag starts True whatever mode the network
    was exported in, and PT2E keeps it. litert-torch reads only that flag ("Your model is converted in
    training mode"). The ops themselves were fixed at export: batch_norm and dropout carry training=False.
    `.eval()` is refused on exported graphs, so the flag is set through nn.Module. Measured: int8 files are
    byte-identical with and without this (mobilenet_v2 alpha 0.35 at 32 px). A graph that really computes
    in training mode fails here instead.
    """
    found = training_mode_ops(graph)
    if found:
        raise ExportError(
            f"the int8 graph computes in training mode ({', '.join(found[:3])}): export an eval-mode model"
        )
    torch.nn.Module.train(graph, False)


def _graph_details(graph: TFLiteGraph) -> TFLiteDetails:
    return TFLiteDetails(graph.operators, graph.xnnpack_partitions, graph.operators.get("QUANTIZE", 0))


def inspect_graph(path: Path) -> TFLiteGraph:
    """Operator counts, float operators, XNNPACK partitions and I/O quantization of a .tflite file."""
    interpreter = litert.interpreter(path)
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    ops = interpreter._get_ops_details()  # the only public-enough view of the graph after delegation
    real_ops = [op for op in ops if op["op_name"] != "DELEGATE"]
    floating = [
        op
        for op in real_ops
        if any(tensors[i]["dtype"] == np.float32 for i in [*op["inputs"], *op["outputs"]] if i >= 0)
    ]
    float_ops = [op["op_name"] for op in floating]
    # QUANTIZE and DEQUANTIZE at a float island's edges carry no module; the island's own operators do
    float_modules = [
        f"{path} ({op['op_name']})"
        for op in floating
        if op["op_name"] not in ("QUANTIZE", "DEQUANTIZE")
        for path in [litert.module_path(tensors[op["outputs"][0]]["name"]) if op["outputs"] else None]
        if path is not None
    ]
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    return TFLiteGraph(
        operators=dict(sorted(Counter(op["op_name"] for op in real_ops).items())),
        float_operators=float_ops,
        xnnpack_partitions=sum(op["op_name"] == "DELEGATE" for op in ops),
        input_dtype=np.dtype(inp["dtype"]).name,
        output_dtype=np.dtype(out["dtype"]).name,
        input_quantization=_quantization(inp),
        output_quantization=_quantization(out),
        float_modules=list(dict.fromkeys(float_modules)),
    )


def _quantization(detail: dict) -> Optional[Quantization]:
    scale, zero_point = detail["quantization"]
    return None if scale == 0 else Quantization(float(scale), int(zero_point))


def check_pure_int8(graph: TFLiteGraph) -> None:
    """int8 in, int8 out, and no operator touching a float tensor anywhere.

    That forbids every float island, and with it every QUANTIZE from float and DEQUANTIZE to float.
    A QUANTIZE from int8 to int8 is a requantization (a concat joining inputs of different scales):
    integer arithmetic, allowed, and counted in the manifest as `requantize_ops`.
    """
    problems = []
    if graph.input_dtype != "int8" or graph.output_dtype != "int8":
        problems.append(f"input/output are {graph.input_dtype}/{graph.output_dtype}, not int8/int8")
    if graph.float_operators:
        counts = Counter(graph.float_operators)
        where = f" (in {', '.join(graph.float_modules[:3])})" if graph.float_modules else ""
        problems.append("operators on float tensors: " + ", ".join(f"{n} x{c}" for n, c in counts.items()) + where)
    if problems:
        raise ExportError("int8 TFLite is not pure int8: " + "; ".join(problems))


class Runner:
    """Runs a .tflite on (N, R, R, 3) uint8 images one at a time (the graph has batch 1)."""

    engine = "LiteRT (XNNPACK)"
    emulated = False

    def __init__(self, path: Path, record: ArtifactRecord, threads: int = 0) -> None:
        self.interpreter = litert.interpreter(path, threads=threads or None)
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        encoding = record.input.encoding
        self.encoding = None if encoding is None else Int8InputEncoding.from_record(encoding)
        if (self.encoding is None) != (self.input["dtype"] == np.float32):
            raise ValueError(f"{path.name}: the manifest's input record does not match the model's input dtype")
        self.out_q = _quantization(self.output)

    def run(self, images: np.ndarray) -> np.ndarray:
        outputs = []
        for image in images:
            x = image[None].astype(np.float32) if self.encoding is None else self.encoding.encode(image[None])
            self.interpreter.set_tensor(self.input["index"], x)
            self.interpreter.invoke()
            y = self.interpreter.get_tensor(self.output["index"])
            if self.out_q is not None:
                y = (y.astype(np.float32) - self.out_q.zero_point) * self.out_q.scale
            outputs.append(y[0].astype(np.float32))
        return np.stack(outputs)
