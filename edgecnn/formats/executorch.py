"""ExecuTorch (.pte) through torch.export and the XNNPACK delegate: a float32 and a full-integer int8 program.

Both take NCHW input, as the PyTorch model does (ExecuTorch's Android and iOS tensors are NCHW too).

- fp32: raw RGB 0..255 with the normalisation inside, like the other float graphs.
- int8: the network without its normalisation -> the same rewrites and quantizer rules as the TFLite int8
  (`rewrites.for_xnnpack`, `pt2e_rules.edge_quantizer` over ExecuTorch's XNNPACKQuantizer: symmetric
  per-channel weights, static activations, calibrated on the same images, the input on the fixed grid of
  `Int8InputEncoding`) -> edge dialect -> int8 graph input and output -> XNNPACK.
  The I/O contract is the TFLite int8's: int8 codes in through the manifest's lookup table, int8 logits
  out with a scale and zero point. The app code that feeds one feeds the other, and the graph carries no
  float edge (with float I/O, the edge quantize and dequantize were its only non-int8 compute).

Delegation is checked at export: every operator left outside XNNPACK is counted by name in the artifact's
details, and an int8 program with any compute operator outside XNNPACK fails, as the TFLite purity check does.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import os
import re
import tempfile
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional, Union

import numpy as np
import torch

from edgecnn.data.preprocess import Int8InputEncoding
from edgecnn.formats import FORMATS
from edgecnn.formats.base import Artifact, ExportJob, file_contract, image_input, int8_image_input, logits_output
from edgecnn.int8.engine import QuantizedGraph, make_int8
from edgecnn.int8.rules import edge_quantizer
from edgecnn.passes.aten import fp32_forms, int8_forms
from edgecnn.passes.modules import for_xnnpack
from edgecnn.schema.artifacts import ArtifactRecord, Quantization, Refusal
from edgecnn.schema.contract import CONTRACT_KEY
from edgecnn.schema.details import INT8_ACTIVATIONS, INT8_WEIGHTS, ExecuTorchDetails
from edgecnn.schema.enums import FormatName, Precision
from edgecnn.schema.int8 import Int8Repair, Measured
from edgecnn.util import console
from edgecnn.util.errors import ExportError
from edgecnn.util.interrupts import checkpoint

FP32_FILE = FORMATS[FormatName.EXECUTORCH].file(Precision.FP32)
INT8_FILE = FORMATS[FormatName.EXECUTORCH].file(Precision.INT8)
MIXED_FILE = FORMATS[FormatName.EXECUTORCH].file(Precision.INT8_MIXED)
REPAIR_CANDIDATE = "model_int8.repair-candidate.pte"  # a remade int8 program while it is measured
INT8_IO = "int8 codes in through the manifest's lookup table, int8 logits out (as the TFLite int8)"

# Operators outside the delegate that move no arithmetic: allowed in an int8 program, still counted.
_LAYOUT_OPS = {
    "aten.view_copy.default",
    "aten.permute_copy.default",
    "aten.squeeze_copy.dims",
    "aten.unsqueeze_copy.default",
    "aten.clone.default",
    "aten.alias_copy.default",
    "aten.expand_copy.default",
    "dim_order_ops._clone_dim_order.default",
}


@contextlib.contextmanager
def _quiet():
    """ExecuTorch's exporter logs per pass and its C++ runtime prints CPU probing lines: keep the console
    to our own progress lines (the log file gets Python's warnings through edgecnn.util.console)."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logging.disable(previous)


def export(job: ExportJob) -> list[Union[Artifact, Refusal]]:
    """The float program, then the int8 one; an int8 program that cannot be built or is not fully
    delegated is refused on its own, and the float one is kept."""
    written: list[Union[Artifact, Refusal]] = [export_fp32(job)]
    try:
        written += export_int8_to_target(job)
    except ExportError as err:
        for name in (INT8_FILE, REPAIR_CANDIDATE, MIXED_FILE):  # a refused program is not left as if it were one
            (job.work_dir / name).unlink(missing_ok=True)
        written.append(Refusal(FormatName.EXECUTORCH, Precision.INT8, INT8_FILE, str(err)))
    return written


_ELEMENTWISE_BINARY = ("add.Tensor", "sub.Tensor", "mul.Tensor", "div.Tensor")


SCALAR_PREFIX = "_edgecnn_scalar_"  # the buffers scalars_as_4d_tensors adds


def scalars_as_4d_tensors(graph: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """`x + 3.0` on a 4-D x as `x + c`, c a (1, 1, 1, 1) buffer holding 3.0: the same values, in place.

    Why: XNNPACK runs convs channels-last, and ExecuTorch's layout pass keeps an elementwise op in NHWC only
    if every operand is 4-D; a scalar operand (hard-swish's `+ 3`) costs a transpose of the feature map on
    each side (docs/export.md gives the measurement).
    """
    targets = {getattr(torch.ops.aten, name.split(".")[0]).Tensor for name in _ELEMENTWISE_BINARY}
    count = 0
    for node in list(graph.graph.nodes):
        if node.op != "call_function" or node.target not in targets or len(node.args) < 2:
            continue
        tensor, scalar = node.args[:2]
        value = tensor.meta.get("val") if isinstance(tensor, torch.fx.Node) else None
        if not isinstance(scalar, (int, float)) or isinstance(scalar, bool) or value is None or value.dim() != 4:
            continue
        name = f"{SCALAR_PREFIX}{count}"
        count += 1
        graph.register_buffer(name, torch.full((1, 1, 1, 1), float(scalar), dtype=value.dtype))
        with graph.graph.inserting_before(node):
            constant = graph.graph.get_attr(name)
        constant.meta["val"] = value.new_full((1, 1, 1, 1), float(scalar))
        node.args = (tensor, constant, *node.args[2:])
    graph.graph.lint()
    graph.recompile()
    return graph


def with_native_hardswish(network: torch.nn.Module) -> torch.nn.Module:
    """`network` (a copy already) with the zoo's hard-swish form, x * relu6(x + 3) * (1/6), as
    `nn.Hardswish`: the same function, which ExecuTorch's XNNPACK lowering keeps as one operator.

    The zoo writes hard-swish out so that LiteRT's int8 keeps it in XNNPACK (its int8 HARD_SWISH is not an
    XNNPACK operator). ExecuTorch lowered that form to an add, a clamp and two multiplies, which its XNNPACK
    runs about 7x slower than its int8 HardSwish table lookup (docs/export.md). Its int8 output equals the
    PT2E simulation's exactly.
    """
    from edgecnn.zoo.models.layers import Hardswish

    for name, module in list(network.named_modules()):
        if isinstance(module, Hardswish):
            parent, _, attribute = name.rpartition(".")
            setattr(network.get_submodule(parent), attribute, torch.nn.Hardswish())
    return network


def _partitioner():
    """XNNPACK's partitioner, also taking int8 hard-swish: ExecuTorch 1.5.1's configuration offers it in float
    only, while the XNNPACK it ships runs it in int8 (`with_native_hardswish`)."""
    from executorch.backends.xnnpack.partition.config import ALL_PARTITIONER_CONFIGS
    from executorch.backends.xnnpack.partition.config.generic_node_configs import HardswishConfig
    from executorch.backends.xnnpack.partition.config.xnnpack_config import ConfigPrecisionType
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

    class Int8HardswishConfig(HardswishConfig):
        def supported_precision_types(self) -> list:
            return [ConfigPrecisionType.FP32, ConfigPrecisionType.STATIC_QUANT]

    return XnnpackPartitioner(
        configs=[Int8HardswishConfig if c is HardswishConfig else c for c in ALL_PARTITIONER_CONFIGS]
    )


def _shape(job: ExportJob) -> list[int]:
    return [1, 3, job.resolution, job.resolution]


def export_fp32(job: ExportJob) -> Artifact:
    from executorch.exir import to_edge_transform_and_lower

    sample = torch.from_numpy(job.calibration[:1]).permute(0, 3, 1, 2).float().contiguous()
    network = with_native_hardswish(for_xnnpack(job.model, sample))
    with console.step("executorch fp32: lowered to XNNPACK"), _quiet(), _lowering_errors("fp32"):
        first = torch.export.export(network, (sample,), strict=True)
        graph = scalars_as_4d_tensors(first.module())
        # XNNPACK's average pool leaves padding out of the mean: one that counts it runs as a depthwise conv
        pooled = sum(fp32_forms(graph, average_pools_as_convs=True).values())
        # exported again only if a pass changed the graph: a strict export of mobilenet_v2 alpha 0.75
        # takes 4.6 s at 1 thread, and it has no scalar operand
        changed = pooled > 0 or any(name.startswith(SCALAR_PREFIX) for name, _ in graph.named_buffers())
        program = torch.export.export(graph, (sample,), strict=True) if changed else first
        image, logits = image_input("image", _shape(job), "NCHW"), logits_output("logits", [1, job.num_classes])
        contract = {CONTRACT_KEY: file_contract(job, Precision.FP32, image, logits)}  # the file says what it takes
        edge = to_edge_transform_and_lower(program, partitioner=[_partitioner()], constant_methods=contract)
        delegation = delegation_of(edge)  # before to_executorch, which rewrites the graph in place
        _write(edge, job.work_dir / FP32_FILE)
    return Artifact(
        FormatName.EXECUTORCH,
        Precision.FP32,
        FP32_FILE,
        image,
        logits,
        delegation,
    )


def int8_network(backbone: torch.nn.Module, sample: torch.Tensor) -> torch.nn.Module:
    """The network the int8 .pte is quantized from: the backbone in the forms XNNPACK runs in int8."""
    # a padded max pool stays whole: XNNPACK takes it here, while as a zero pad and a pool (what LiteRT
    # needs) the pad was left unquantized and ran in float between two Converts (measured on resnet18 at
    # 224 px, 1 thread: 0.45 ms of 11.4)
    return with_native_hardswish(for_xnnpack(backbone, sample))


def quantize(
    network: torch.nn.Module,
    calibration: np.ndarray,
    encoding: Int8InputEncoding,
    keep_float: bool = False,
    float_units: Iterable[str] = (),
    any_batch: bool = False,
) -> "tuple[torch.fx.GraphModule, torch.fx.GraphModule | None]":
    """PT2E with ExecuTorch's XNNPACK quantizer and the project's rules, calibrated on `calibration` (uint8
    NHWC), `float_units` (module paths) left unquantized: the quantized graph, and (`keep_float`) the float
    graph it was quantized from, its BatchNorms folded into the convs as the quantizer folds them (what
    `inspect-int8` compares the int8 values with). `any_batch`: a graph taking any batch, for simulation.

    Weights stay float constants behind their quantize (not folded to int8 codes), as in the TFLite's graph,
    so that fine-tuning can train them; the lowering folds them."""
    import copy

    from executorch.backends.xnnpack.quantizer import xnnpack_quantizer_utils
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e import quantize_pt2e
    from torchao.quantization.pt2e.utils import _fuse_conv_bn_

    normalized = [
        torch.from_numpy(encoding.decode(encoding.encode(image[None]))).permute(0, 3, 1, 2).contiguous()
        for image in calibration
    ]
    quantizer = edge_quantizer(
        XNNPACKQuantizer,
        xnnpack_quantizer_utils,
        encoding,
        network,
        frozenset(float_units),
        int8_unary_ops=frozenset({torch.ops.aten.hardswish.default}),
    ).set_global(get_symmetric_quantization_config(is_per_channel=True))
    dynamic = ({0: torch.export.Dim("batch", min=1, max=1024)},) if any_batch else None
    example = torch.cat([normalized[0]] * 2) if any_batch else normalized[0]  # a size-1 axis would be fixed
    graph = torch.export.export(network, (example,), strict=True, dynamic_shapes=dynamic).module()
    int8_forms(graph, native_hardswish=True, split_as_slices=True, pad_max_pools=False)
    graph = scalars_as_4d_tensors(graph)
    float_graph = None
    if keep_float:
        float_graph = copy.deepcopy(graph)
        _fuse_conv_bn_(float_graph)
    graph = quantize_pt2e.prepare_pt2e(graph, quantizer)
    with torch.no_grad():
        for image in console.track(normalized, f"executorch int8: calibrated on {len(normalized)} images"):
            checkpoint()  # batch 1: the graph's shapes are static
            graph(image)
    return quantize_pt2e.convert_pt2e(graph, fold_quantize=False), float_graph


@dataclasses.dataclass
class _MixedProgramWriter:
    """`model_int8_mixed.pte`: int8 with float units, int8 input and output; XNNPACK runs the float units in
    float, so the program is still one delegate, with nothing outside it."""

    job: ExportJob
    file: str = MIXED_FILE

    def write(self, quantized: QuantizedGraph, float_units: list[str]) -> Artifact:
        made = _lowered_int8(self.job, quantized, self.file, Precision.INT8_MIXED)
        assert isinstance(made.details, ExecuTorchDetails)
        details = dataclasses.replace(
            made.details,
            weights=f"{INT8_WEIGHTS}, float in the float layers",
            activations=f"{INT8_ACTIVATIONS}; float inside the float layers",
            float_layers=list(float_units),
        )
        return dataclasses.replace(made, details=details)

    def recorded(self, made: Artifact, repair: Int8Repair, target: str, measured: Measured) -> Artifact:
        assert isinstance(made.details, ExecuTorchDetails)
        details = dataclasses.replace(
            made.details, target=target, measured=measured, measured_on=repair.measured_on, repair=repair
        )
        return dataclasses.replace(made, details=details)


@dataclasses.dataclass
class Int8ProgramWriter:
    """What the int8 engine (`edgecnn.int8.engine`) needs from ExecuTorch: PT2E with its XNNPACK quantizer,
    the lowering, the delegation check and ExecuTorch's run of a program."""

    job: ExportJob
    label: str = "executorch"
    int8_file: str = INT8_FILE
    candidate_file: str = REPAIR_CANDIDATE
    before_repair_file: Optional[str] = None

    def __post_init__(self) -> None:
        self.work_dir = self.job.work_dir
        self.encoding = Int8InputEncoding.for_normalization(self.job.mean, self.job.std)
        self.mixed = _MixedProgramWriter(self.job)

    def quantize(
        self, backbone: torch.nn.Module, float_units: Iterable[str] = (), any_batch: bool = False
    ) -> QuantizedGraph:
        sample = torch.from_numpy(self.encoding.decode(self.encoding.encode(self.job.calibration[:1])))
        sample = sample.permute(0, 3, 1, 2).contiguous()
        network = int8_network(backbone, sample)
        graph, _ = quantize(network, self.job.calibration, self.encoding, float_units=float_units, any_batch=any_batch)
        return QuantizedGraph(graph, None, sample, network, self.encoding)

    def write(self, quantized: QuantizedGraph, file: str) -> Artifact:
        return _lowered_int8(self.job, quantized, file)

    def logits(self, made: Artifact, images: np.ndarray) -> np.ndarray:
        return Runner(self.work_dir / made.path, made, threads=1).run(images)

    def path_of(self, made: Artifact) -> str:
        return made.path

    def renamed(self, made: Artifact, file: str) -> Artifact:
        return dataclasses.replace(made, path=file)

    def with_repair(self, made: Artifact, repair: Int8Repair) -> Artifact:
        assert isinstance(made.details, ExecuTorchDetails)
        return dataclasses.replace(made, details=dataclasses.replace(made.details, repair=repair))


def export_int8_to_target(job: ExportJob) -> list[Artifact]:
    """The int8 program held to the job's bound by the int8 engine (`edgecnn.int8.engine`), as the int8
    TFLite is: the same remedies, kept where ExecuTorch's run of the program measures better, and where a
    bound the user stated is still missed, `model_int8_mixed.pte` beside it."""
    made = make_int8(Int8ProgramWriter(job), job.network(), job.int8)
    return [made.int8] + ([made.mixed] if made.mixed is not None else [])


def export_int8(job: ExportJob, backbone: "torch.nn.Module | None" = None, file: str = INT8_FILE) -> Artifact:
    """The int8 program of `backbone` (default: the job's), written as `file`, with no repair."""
    writer = Int8ProgramWriter(job)
    return writer.write(writer.quantize(job.backbone if backbone is None else backbone), file)


def _lowered_int8(
    job: ExportJob, quantized: QuantizedGraph, file: str, precision: Precision = Precision.INT8
) -> Artifact:
    """The quantized graph lowered to XNNPACK with int8 input and output, checked and written as `file`."""
    import copy

    from executorch.exir import EdgeCompileConfig, to_edge
    from executorch.exir.passes.quantize_io_pass import QuantizeInputs, QuantizeOutputs
    from torchao.quantization.pt2e.constant_fold import constant_fold
    from torchao.quantization.pt2e.quantize_pt2e import _quant_node_constraint

    encoding, sample = quantized.encoding, quantized.sample
    graph = copy.deepcopy(quantized.graph)
    constant_fold(graph, _quant_node_constraint)  # weights to int8 codes, as convert_pt2e's fold_quantize does
    with console.step(f"executorch {precision}: lowered to XNNPACK"), _quiet(), _lowering_errors(precision):
        program = torch.export.export(graph, (sample,), strict=True)
        image = int8_image_input("image", _shape(job), "NCHW", encoding.to_record())
        logits = logits_output("logits", [1, job.num_classes], "int8", _output_quantization(program))
        # the partitioner keeps these whole in to_edge_transform_and_lower; to_edge (needed here, so that
        # the I/O passes run before partitioning) would decompose a max pool into max_pool2d_with_indices,
        # which XNNPACK does not take (measured: ResNet-18's stem pool left outside the delegate)
        edge = to_edge(
            program,
            compile_config=EdgeCompileConfig(
                _check_ir_validity=False,
                preserve_ops=[torch.ops.aten.max_pool2d.default, torch.ops.aten.hardswish.default],
            ),
            constant_methods={CONTRACT_KEY: file_contract(job, precision, image, logits)},
        )
        # before partitioning: afterwards the edge quantize and dequantize are inside the delegate
        inputs, outputs = QuantizeInputs(edge, [0]), QuantizeOutputs(edge, [0])
        edge = edge.transform([inputs, outputs]).to_backend(_partitioner())
        delegation = delegation_of(edge)
    compute = {op: n for op, n in delegation.outside_delegate.items() if op not in _LAYOUT_OPS}
    if compute:
        raise ExportError(
            f"{precision} .pte is not fully delegated to XNNPACK: "
            + ", ".join(f"{op} x{n}" for op, n in sorted(compute.items()))
            + " left outside"
        )
    in_scale, in_zero, *_ = inputs.quant_args[0]
    if (float(in_scale), int(in_zero)) != (encoding.scale, encoding.zero_point):
        raise ExportError(
            f"{precision} .pte input quantization (scale {in_scale}, zero point {in_zero}) is not the "
            f"fixed input encoding (scale {encoding.scale}, zero point {encoding.zero_point})"
        )
    out_scale, out_zero, *_ = outputs.dequant_args[0]
    if Quantization(float(out_scale), int(out_zero)) != logits.quantization:
        raise ExportError(
            f"{precision} .pte output quantization (scale {out_scale}, zero point {out_zero}) is not the graph's "
            f"last dequantize ({logits.quantization}), which its contract states"
        )
    with console.step(f"executorch {precision}: written"), _quiet():
        _write(edge, job.work_dir / file)
    return Artifact(
        FormatName.EXECUTORCH,
        precision,
        file,
        image,
        logits,
        dataclasses.replace(delegation, weights=INT8_WEIGHTS, activations=INT8_ACTIVATIONS, io=INT8_IO),
    )


@contextlib.contextmanager
def _lowering_errors(precision: str):
    """torch.export and the edge passes report a graph they cannot take as assorted exceptions with long
    traces (the pass manager wraps a pass's error in a bare Exception): one line of the innermost, as an
    export failure of this precision."""
    try:
        yield
    except Exception as err:  # noqa: BLE001 (the pass manager raises bare Exception)
        if isinstance(err, (KeyboardInterrupt, ExportError)):
            raise
        inner: BaseException = err
        while inner.__cause__ is not None:
            inner = inner.__cause__
        first = (str(inner).strip().splitlines() or [type(inner).__name__])[0]
        raise ExportError(f"ExecuTorch cannot build the {precision} program: {first[:300]}") from None


def read_contract(path: Path) -> str:
    """The contract a .pte carries: its constant method `CONTRACT_KEY`, run by ExecuTorch's runtime."""
    from executorch.runtime import Runtime

    program = Runtime.get().load_program(Path(path))
    if CONTRACT_KEY not in program.method_names:
        raise ValueError(f"{Path(path).name} carries no {CONTRACT_KEY}")
    (text,) = program.load_method(CONTRACT_KEY).execute([])
    return str(text)


def _output_quantization(program: torch.export.ExportedProgram) -> Quantization:
    """The scale and zero point of the quantized graph's output: its last dequantize, which ExecuTorch's
    QuantizeOutputs pass takes away so that the program returns int8."""
    output = next(n for n in program.graph.nodes if n.op == "output")
    last = output.args[0][0]
    if not (isinstance(last, torch.fx.Node) and "dequantize_per_tensor" in str(last.target)):
        raise ExportError(f"the int8 graph does not end in a dequantize of its logits, but in {last}")
    scale, zero_point = last.args[1], last.args[2]
    if not isinstance(scale, float) or not isinstance(zero_point, int):
        raise ExportError(f"the int8 graph's last dequantize has no constant scale and zero point: {last.args}")
    return Quantization(scale, zero_point)


def _write(edge, path: Path) -> None:
    program = edge.to_executorch()
    with open(path, "wb") as file:
        program.write_to_file(file)


def delegation_of(edge) -> ExecuTorchDetails:
    """How many XNNPACK pieces the program has, and every operator left outside them, by name."""
    graph = edge.exported_program().graph_module.graph
    outside: Counter = Counter()
    pieces = 0
    for node in graph.nodes:
        if node.op != "call_function":
            continue
        name = getattr(node.target, "__name__", str(node.target))
        if name == "executorch_call_delegate":
            pieces += 1
        elif name != "getitem":
            outside[name] += 1  # e.g. "aten.cumsum.default" (an edge operator's __name__)
    return ExecuTorchDetails("XNNPACK", pieces, dict(sorted(outside.items())))


_SCALAR_TYPE_INT8 = 1  # c10::ScalarType::Char, as the runtime's tensor metadata reports a dtype
_threadpool_size = None  # the runtime's thread pool is one per process: its size as last set here
_threadpool_generation = 0  # counts the pools built here; a method is only valid under the pool it was loaded with


def _use_threads(count: int) -> int:
    """Size ExecuTorch's process-wide thread pool (XNNPACK runs on it) and return its generation.

    Resetting the pool destroys the old one, and the XNNPACK delegate keeps the pool it was initialised
    with: a method loaded before a reset and run after it runs on a freed pool (a segfault in CI). So the
    pool is rebuilt only when the count changes, and a Runner reloads its method when the generation it
    was loaded under is gone."""
    global _threadpool_size, _threadpool_generation
    if count != _threadpool_size:
        from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool

        _unsafe_reset_threadpool(count)
        _threadpool_size = count
        _threadpool_generation += 1
    return _threadpool_generation


class PooledMethod:
    """A program's `forward`, loaded under the thread pool of `threads` and reloaded if another user
    resized the pool since (see `_use_threads`)."""

    def __init__(self, path: Path, threads: int, verification: str = "Minimal") -> None:
        self.path, self.threads, self.verification = Path(path), threads, verification
        self._load()

    def _load(self) -> None:
        from executorch.runtime import Runtime, Verification

        self.method = self.program = None  # the old delegate goes before a new one is built
        self.generation = _use_threads(self.threads)
        with _quiet():
            self.program = Runtime.get().load_program(self.path, verification=getattr(Verification, self.verification))
            self.method = self.program.load_method("forward")

    def _loaded(self) -> Any:  # executorch's Method (untyped)
        if self.method is None:
            raise RuntimeError(f"{self.path.name}: its forward method is not loaded (the last load failed)")
        return self.method

    def input_dtype(self) -> int:
        return self._loaded().metadata.input_tensor_meta(0).dtype()

    def execute(self, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        if _use_threads(self.threads) != self.generation:
            self._load()
        return self._loaded().execute(inputs)


@dataclass(frozen=True)
class OperatorTime:
    kind: str  # XNNPACK's operator name without its index, e.g. "Convolution (NHWC, QC8) DWConv"
    count: int  # operators of this kind in one run
    ms: float  # their summed time in one run (the median run)


def operator_profile(path: Path, threads: int = 1, runs: int = 20) -> list[OperatorTime]:
    """Where a .pte's time goes: XNNPACK's own per-operator timing (ETDump) of `runs` runs on a zero input,
    summed by operator kind, slowest first. The median run is the one reported."""
    from executorch.devtools import Inspector
    from executorch.extension.pybindings.portable_lib import _load_for_executorch

    _use_threads(threads)
    with _quiet():
        module = _load_for_executorch(str(path), enable_etdump=True)
    meta = module.method_meta("forward").input_tensor_meta(0)
    dtype = torch.int8 if meta.dtype() == _SCALAR_TYPE_INT8 else torch.float32
    sample = torch.zeros(tuple(meta.sizes()), dtype=dtype)
    for _ in range(runs):
        module.forward((sample,))
    with tempfile.TemporaryDirectory(prefix="edgecnn-etdump-") as folder:
        dump = Path(folder) / "run.etdp"
        module.write_etdump_result_to_file(str(dump))
        with warnings.catch_warnings(), _quiet():
            warnings.simplefilter("ignore")  # "Output Buffer not found": no tensors were asked for
            blocks = Inspector(etdump_path=str(dump)).event_blocks
    totals: dict[str, list[float]] = {}
    counts: Counter = Counter()
    for block in blocks:
        for event in block.events:
            if event.perf_data is None or not event.is_delegated_op:
                continue
            kind = re.sub(r" #\d+$", "", event.name)
            totals[kind] = (
                [a + b for a, b in zip(totals[kind], event.perf_data.raw)]
                if kind in totals
                else list(event.perf_data.raw)
            )
            counts[kind] += 1
    times = [OperatorTime(kind, counts[kind], float(np.median(t))) for kind, t in totals.items()]
    return sorted(times, key=lambda t: -t.ms)


class Runner:
    """Runs a .pte on (N, R, R, 3) uint8 images one at a time (the program has batch 1), through
    executorch.runtime, with the process-wide thread pool sized to `threads` (0: all cores)."""

    engine = "ExecuTorch (XNNPACK)"
    emulated = False

    def __init__(self, path: Path, record: "ArtifactRecord | Artifact", threads: int = 0) -> None:
        self.threads = threads or os.cpu_count() or 1
        self.method = PooledMethod(path, self.threads)
        encoding = record.input.encoding
        self.encoding = None if encoding is None else Int8InputEncoding.from_record(encoding)
        int8_input = self.method.input_dtype() == _SCALAR_TYPE_INT8
        if (self.encoding is not None) != int8_input:
            raise ValueError(f"{Path(path).name}: the manifest's input record does not match the program's input dtype")
        self.out_q = record.output.quantization

    def run(self, images: np.ndarray) -> np.ndarray:
        outputs = []
        for image in images:
            x = (
                np.ascontiguousarray(image[None].transpose(0, 3, 1, 2), dtype=np.float32)
                if self.encoding is None
                else self.encoding.encode_planar(image[None])
            )
            (logits,) = self.method.execute([torch.from_numpy(x)])
            y = logits.numpy()
            if self.out_q is not None:
                y = (y.astype(np.float32) - self.out_q.zero_point) * self.out_q.scale
            outputs.append(y[0].astype(np.float32))
        return np.stack(outputs)
