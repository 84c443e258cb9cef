"""TFLite through litert-torch: a float32 model and a full-integer int8 model, both NHWC.

int8: the network without its normalisation -> torch.export (strict, batch 1) -> PT2E with symmetric
per-channel weights and static activations, calibrated on the calibration images, the input on the fixed
grid of `Int8InputEncoding` (apps normalise and quantize with one table lookup per pixel) -> LiteRT. The result must be int8 end to end: int8 input and output,
no float tensor on any operator and no QUANTIZE/DEQUANTIZE; anything else fails the export. The number of
pieces XNNPACK splits each graph into is recorded: a fragmented graph is slow even when it is all int8.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import os
from collections import Counter
from pathlib import Path
from typing import Union

import numpy as np
import torch

from edgecnn.util import console
from edgecnn.util.errors import ExportError
from edgecnn.util.interrupts import checkpoint
from edgecnn.data.preprocess import Int8InputEncoding
from edgecnn.formats.rewrites import for_xnnpack
from edgecnn.formats.base import (Artifact, ArtifactRecord, ExportJob, Quantization, Refusal, image_input,
                                  int8_image_input, logits_output)

FP32_FILE = "model_fp32.tflite"
INT8_FILE = "model_int8.tflite"


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
        written.append(export_int8_to_target(job))
    except ExportError as err:
        for name in (INT8_FILE, REPAIR_CANDIDATE):  # a refused graph is not left as if it were one
            (job.work_dir / name).unlink(missing_ok=True)
        written.append(Refusal("tflite", "int8", INT8_FILE, str(err)))
    return written


def export_fp32(job: ExportJob) -> Artifact:
    import litert_torch

    sample = (torch.from_numpy(job.calibration[:1]).float(),)
    model = litert_torch.to_channel_last_io(for_xnnpack(job.model, sample[0].permute(0, 3, 1, 2), int8=False),
                                            args=[0]).eval()
    with console.step("tflite fp32: converted"), _quiet(), _converter_errors("fp32"):
        litert_torch.convert(model, sample).export(str(job.work_dir / FP32_FILE))
    graph = inspect_graph(job.work_dir / FP32_FILE)
    return Artifact("tflite", "fp32", FP32_FILE, image_input("image", _shape(job), "NHWC"),
                    logits_output("logits", [1, job.num_classes]), _graph_details(graph))


def _shape(job: ExportJob) -> list[int]:
    return [1, job.resolution, job.resolution, 3]


REPAIR_CANDIDATE = ".model_int8_repaired.tflite"
HELD_OUT = 16  # calibration images the candidates are measured on (the export's check uses other photos)


def worst_cosine(job: ExportJob, path: Path, images: np.ndarray) -> float:
    """The int8 file's worst per-image logits cosine against the PyTorch model, on uint8 NHWC `images`."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=1)
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    encoding = Int8InputEncoding.for_normalization(job.mean, job.std)
    scale, zero_point = out["quantization"]
    with torch.no_grad():
        reference = job.model(torch.from_numpy(images).permute(0, 3, 1, 2).float()).numpy().astype(np.float64)
    worst = 1.0
    for image, expected in zip(images, reference):
        interpreter.set_tensor(inp["index"], encoding.encode(image[None]))
        interpreter.invoke()
        got = (interpreter.get_tensor(out["index"])[0].astype(np.float64) - zero_point) * scale
        norms = np.linalg.norm(got) * np.linalg.norm(expected)
        worst = min(worst, float(got @ expected / norms) if norms > 0 else 0.0)
    return worst


def export_int8_to_target(job: ExportJob) -> Artifact:
    """The int8 model, and where it has a bound to meet (`job.int8_target`) and repair is "auto", the
    remedies of `int8_repair` on a copy of the network: kept if they measure better on held-out
    calibration images, whether or not the plain model met the bound (bias correction took trained
    EfficientNet-Lite0 from worst cosine 0.971 to 0.994 there, and its int8 top-1 from PyTorch's on 17
    of the 19 bundled photos to all 19). The artifact's details record every candidate and what was kept."""
    from edgecnn.formats.int8_repair import correct_bias, equalize_cross_layer

    artifact = export_int8(job)
    held_out = job.calibration[-min(HELD_OUT, len(job.calibration)):]
    target = job.int8_target
    repair = {"mode": job.int8_repair, "target": str(target) if target else None, "applied": [],
              "measured_on": f"{len(held_out)} calibration images, worst logits cosine against PyTorch"}
    if job.int8_repair == "none" or target is None:
        return _with_repair(artifact, repair)
    plain = worst_cosine(job, job.work_dir / INT8_FILE, held_out)
    repair["candidates"] = [{"remedies": [], "worst_cosine": round(plain, 6)}]
    equalized, pairs = equalize_cross_layer(job.backbone)
    encoding = Int8InputEncoding.for_normalization(job.mean, job.std)
    batch = torch.from_numpy(encoding.decode(encoding.encode(job.calibration))).permute(0, 3, 1, 2)
    corrected, layers = correct_bias(equalized, [batch[i:i + 32] for i in range(0, len(batch), 32)])
    remedies = ([f"cross-layer equalisation ({pairs} conv pairs)"] if pairs else []) + \
        [f"bias correction ({layers} layers)"]
    with console.step(f"tflite int8 (worst cosine {plain:.4f}) remade with {', '.join(remedies)}"):
        candidate = export_int8(job, corrected, REPAIR_CANDIDATE)
        repaired = worst_cosine(job, job.work_dir / REPAIR_CANDIDATE, held_out)
    repair["candidates"].append({"remedies": remedies, "worst_cosine": round(repaired, 6)})
    if repaired > plain:
        os.replace(job.work_dir / REPAIR_CANDIDATE, job.work_dir / INT8_FILE)
        artifact = dataclasses.replace(candidate, path=INT8_FILE)
        repair["applied"] = remedies
    else:
        (job.work_dir / REPAIR_CANDIDATE).unlink()
    return _with_repair(artifact, repair)


def _with_repair(artifact: Artifact, repair: dict) -> Artifact:
    return dataclasses.replace(artifact, details={**artifact.details, "repair": repair})


def export_int8(job: ExportJob, backbone: "torch.nn.Module | None" = None, file: str = INT8_FILE) -> Artifact:
    import litert_torch
    from litert_torch.quantize import pt2e_quantizer
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e import quantize_pt2e

    encoding = Int8InputEncoding.for_normalization(job.mean, job.std)
    normalized = [torch.from_numpy(encoding.decode(encoding.encode(image[None]))) for image in job.calibration]
    backbone = for_xnnpack(job.backbone if backbone is None else backbone, normalized[0].permute(0, 3, 1, 2), int8=True)
    int8_model = litert_torch.to_channel_last_io(backbone, args=[0]).eval()

    quantizer = _edge_quantizer(encoding).set_global(
        pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=True))
    # strict export: non-strict tracing silently leaves residual adds in float (DESIGN.md)
    graph = torch.export.export(int8_model, (normalized[0],), strict=True).module()
    graph = quantize_pt2e.prepare_pt2e(graph, quantizer)
    with torch.no_grad():
        for image in console.track(normalized, f"tflite int8: calibrated on {len(normalized)} images"):
            checkpoint()  # batch 1: the graph's shapes are static
            graph(image)
    graph = quantize_pt2e.convert_pt2e(graph, fold_quantize=False)
    mark_inference_graph(graph)
    with console.step("tflite int8: converted"), _quiet(), _converter_errors("int8"):
        litert_torch.convert(graph, (normalized[0],), quant_config=QuantConfig(pt2e_quantizer=quantizer)).export(
            str(job.work_dir / file))
    int8_graph = inspect_graph(job.work_dir / file)
    check_pure_int8(int8_graph)
    if int8_graph["input_quantization"] != {"scale": encoding.scale, "zero_point": encoding.zero_point}:
        raise ExportError(f"int8 TFLite input quantization {int8_graph['input_quantization']} is not the fixed "
                          f"input encoding (scale {encoding.scale}, zero point {encoding.zero_point})")
    return Artifact("tflite", "int8", file, int8_image_input("image", _shape(job), "NHWC", encoding.to_dict()),
                    logits_output("logits", [1, job.num_classes], "int8",
                                  Quantization(**int8_graph["output_quantization"])),
                    {**_graph_details(int8_graph), "weights": "int8 symmetric per-channel",
                     "activations": "int8 static, calibrated"})


# aten ops whose last argument says whether they compute in training mode
_MODE_OPS = {"aten.batch_norm.default": 5, "aten._native_batch_norm_legit.default": 5, "aten.dropout.default": 2,
             "aten.native_dropout.default": 2}
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
        raise ExportError(f"the int8 graph computes in training mode ({', '.join(found[:3])}): export an "
                          "eval-mode model")
    torch.nn.Module.train(graph, False)


def _edge_quantizer(encoding: Int8InputEncoding):
    """litert-torch's PT2E quantizer with two changes.

    The graph input takes the fixed `encoding` grid: left to calibration, its range would be whatever the
    calibration photos happen to reach, and an app's brighter or darker pixels would clip.

    A conv followed by ReLU6 is quantized as one unit, its output observed after the clamp (as TFLite
    fuses them): litert-torch pairs convs with ReLU only, so a ReLU6 shared the conv's unclamped range
    and kept a few of the 256 levels for 0..6 (trained EfficientNet-Lite0: worst cosine 0.77 against
    PyTorch, top-1 agreement 38%, before this).
    """
    from litert_torch.quantize import pt2e_quantizer
    from litert_torch.quantize import pt2e_quantizer_utils as utils
    from torchao.quantization.pt2e.quantizer import (FixedQParamsQuantizationSpec, QuantizationAnnotation,
                                                     SharedQuantizationSpec)

    fixed = FixedQParamsQuantizationSpec(dtype=torch.int8, scale=encoding.scale, zero_point=encoding.zero_point,
                                         quant_min=-128, quant_max=127, qscheme=torch.per_tensor_affine)
    convs = {torch.ops.aten.conv2d.default, torch.ops.aten.convolution.default}
    clamps = {torch.ops.aten.hardtanh.default, torch.ops.aten.hardtanh_.default}

    def annotate_conv_relu6(model: torch.fx.GraphModule, config) -> None:
        for clamp in model.graph.nodes:
            conv = clamp.args[0] if clamp.op == "call_function" and clamp.target in clamps else None
            if not isinstance(conv, torch.fx.Node) or conv.target not in convs or len(conv.users) != 1:
                continue
            if tuple(float(a) for a in clamp.args[1:3]) != (0.0, 6.0):
                continue
            partition = [clamp, conv, conv.args[1]]
            inputs = {conv.args[0]: utils.get_input_act_qspec(config), conv.args[1]: utils.get_weight_qspec(config)}
            bias = conv.args[2] if len(conv.args) > 2 else None
            if isinstance(bias, torch.fx.Node):
                inputs[bias] = utils.get_bias_qspec(config)
                partition.append(bias)
            if utils._is_annotated(partition):
                continue
            conv.meta["quantization_annotation"] = QuantizationAnnotation(input_qspec_map=inputs,
                                                                                _annotated=True)
            clamp.meta["quantization_annotation"] = QuantizationAnnotation(
                output_qspec=utils.get_output_act_qspec(config), _annotated=True)
            utils._mark_nodes_as_annotated(partition)

    def share_scale_through_value_preserving_ops(model: torch.fx.GraphModule) -> None:
        # An op that only moves or selects values (eval-mode dropout, a copy, a max or average pool, a zero
        # padding) left
        # unannotated gives its input's producer a scale of its own, and a concat after it cannot share
        # one scale across its inputs: DenseNet-121's int8 conversion failed on exactly that ('same
        # scale constraint'), and GoogLeNet's concats needed 8 requantize ops. Such an op takes its
        # input's quantization instead.
        for node in model.graph.nodes:
            if node.op != "call_function" or node.target not in passthrough or node.meta.get(
                    "quantization_annotation") is not None:
                continue
            if node.target == torch.ops.aten.dropout.default and (len(node.args) < 3 or node.args[2]):
                continue  # a training-mode dropout changes values
            source = node.args[0]
            annotation = source.meta.get("quantization_annotation") if isinstance(source, torch.fx.Node) else None
            if annotation is None or annotation.output_qspec is None:
                continue
            shared = SharedQuantizationSpec(source)
            node.meta["quantization_annotation"] = QuantizationAnnotation(
                input_qspec_map={source: shared}, output_qspec=shared, _annotated=True)

    passthrough = {torch.ops.aten.dropout.default, torch.ops.aten.clone.default, torch.ops.aten.alias.default,
                   torch.ops.aten.max_pool2d.default, torch.ops.aten.avg_pool2d.default,
                   torch.ops.aten.constant_pad_nd.default, torch.ops.aten.pad.default}

    class EdgeQuantizer(pt2e_quantizer.PT2EQuantizer):
        def annotate(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
            annotate_conv_relu6(model, self.global_config)  # first, so the plain conv rule leaves these
            model = super().annotate(model)
            share_scale_through_value_preserving_ops(model)
            inputs = {n for n in model.graph.nodes if n.op == "placeholder"}
            for node in model.graph.nodes:  # the NHWC->NCHW permute in front is the same values
                if node.target == torch.ops.aten.permute.default and node.args[0] in inputs:
                    inputs.add(node)
            for node in model.graph.nodes:
                annotation = node.meta.get("quantization_annotation")
                for edge in list(annotation.input_qspec_map) if annotation is not None else []:
                    if edge in inputs:
                        annotation.input_qspec_map[edge] = fixed
            return model

    return EdgeQuantizer()


def _graph_details(graph: dict) -> dict:
    return {"operators": graph["operators"], "xnnpack_partitions": graph["xnnpack_partitions"],
            "requantize_ops": graph["operators"].get("QUANTIZE", 0)}


def inspect_graph(path: Path) -> dict:
    """Operator counts, float operators, XNNPACK partitions and I/O quantization of a .tflite file."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))  # applies the default XNNPACK delegate
    interpreter.allocate_tensors()
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    ops = interpreter._get_ops_details()  # the only public-enough view of the graph after delegation
    real_ops = [op for op in ops if op["op_name"] != "DELEGATE"]
    float_ops = [op["op_name"] for op in real_ops
                 if any(tensors[i]["dtype"] == np.float32 for i in [*op["inputs"], *op["outputs"]] if i >= 0)]
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    return {
        "operators": dict(sorted(Counter(op["op_name"] for op in real_ops).items())),
        "float_operators": float_ops,
        "xnnpack_partitions": sum(op["op_name"] == "DELEGATE" for op in ops),
        "input_dtype": np.dtype(inp["dtype"]).name,
        "output_dtype": np.dtype(out["dtype"]).name,
        "input_quantization": _quantization(inp),
        "output_quantization": _quantization(out),
    }


def _quantization(detail: dict):
    scale, zero_point = detail["quantization"]
    return None if scale == 0 else {"scale": float(scale), "zero_point": int(zero_point)}


def check_pure_int8(graph: dict) -> None:
    """int8 in, int8 out, and no operator touching a float tensor anywhere.

    That forbids every float island, and with it every QUANTIZE from float and DEQUANTIZE to float.
    A QUANTIZE from int8 to int8 is a requantization (a concat joining inputs of different scales):
    integer arithmetic, allowed, and counted in the manifest as `requantize_ops`.
    """
    problems = []
    if graph["input_dtype"] != "int8" or graph["output_dtype"] != "int8":
        problems.append(f"input/output are {graph['input_dtype']}/{graph['output_dtype']}, not int8/int8")
    if graph["float_operators"]:
        counts = Counter(graph["float_operators"])
        problems.append("operators on float tensors: " + ", ".join(f"{n} x{c}" for n, c in counts.items()))
    if problems:
        raise ExportError("int8 TFLite is not pure int8: " + "; ".join(problems))


class Runner:
    """Runs a .tflite on (N, R, R, 3) uint8 images one at a time (the graph has batch 1)."""

    engine = "LiteRT (XNNPACK)"
    emulated = False

    def __init__(self, path: Path, record: ArtifactRecord, threads: int = 0) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_path=str(path), num_threads=threads or None)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        encoding = record.input.encoding
        self.encoding = None if encoding is None else Int8InputEncoding.from_dict(encoding)
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
                y = (y.astype(np.float32) - self.out_q["zero_point"]) * self.out_q["scale"]
            outputs.append(y[0].astype(np.float32))
        return np.stack(outputs)
