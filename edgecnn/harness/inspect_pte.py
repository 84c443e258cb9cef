"""Per-layer int8 error of an int8 `.pte`, named by PyTorch module, in the schema of the TFLite inspection.

ExecuTorch's devtools record intermediate outputs only outside delegates, and the whole int8 program is one
XNNPACK delegate. So the int8 values are taken from the quantized graph that was lowered: the export's PT2E
graph, quantized again from the same network, calibration images and rules (deterministic), run with every
quantize/dequantize pair as it stands. Its logits are then checked against the `.pte` run by ExecuTorch's
runtime on the same images: the report gives their cosine and how many int8 output codes are equal, so a
reader sees how close the graph came to what the runtime computed.

Per int8 tensor (the output of an operator the quantizer closed with a quantize):
- local error: that int8 tensor against the same unit computed in float with PyTorch's weights from the
  dequantized int8 tensors it reads (a conv with its folded BatchNorm and its activation is one unit);
- accumulated error: against the float network at that tensor (BatchNorms folded as the quantizer folds
  them), as SQNR and cosine, with scale, rmse / scale and the fraction clipped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import fx, nn

from edgecnn.data.preprocess import Int8InputEncoding
from edgecnn.formats import ArtifactRecord
from edgecnn.harness.int8_source import made_from
from edgecnn.harness.layer_errors import Errors
from edgecnn.schema.details import ExecuTorchDetails
from edgecnn.schema.int8 import Int8Inspection, LayerError
from edgecnn.schema.manifest import Manifest
from edgecnn.util import console
from edgecnn.util.errors import UsageError
from edgecnn.util.interrupts import checkpoint
from edgecnn.weights.reference import calibration_images

METHOD = (
    "the quantized graph that was lowered (PT2E, quantized again from the export's network, calibration images "
    "and rules)"
)
RUNTIME_MIN_COSINE = 0.99  # the graph must be the program the runtime ran (measured 0.9999+ on the zoo)
# by name: the quantized_decomposed operators are registered only once torchao's quantization is imported
_QUANTIZE = ("quantized_decomposed.quantize_per_tensor.",)
_ACTIVATIONS = {
    torch.ops.aten.relu.default,
    torch.ops.aten.relu_.default,
    torch.ops.aten.hardtanh.default,
    torch.ops.aten.hardtanh_.default,
}
# operators that move or keep data (their int8 tensor is the one reported where it was made), as the TFLite
# inspection leaves out PAD, RESHAPE and the like
_NOT_LAYERS = {
    "getitem",
    "flatten",
    "view",
    "reshape",
    "_unsafe_view",
    "dropout",
    "clone",
    "permute",
    "slice",
    "squeeze",
    "unsqueeze",
    "pad",
    "constant_pad_nd",
    "contiguous",
    "expand",
}


def _base_name(node: fx.Node) -> str:
    return getattr(node.target, "__name__", str(node.target)).split(".")[0]


def _op_name(node: fx.Node) -> str:
    """`conv2d`, `conv2d+hardtanh`: the aten operator, with the activation fused into it."""
    name = _base_name(node)
    source = node.args[0] if node.target in _ACTIVATIONS and isinstance(node.args[0], fx.Node) else None
    if source is not None and source.op == "call_function" and len(source.users) == 1:
        return f"{_op_name(source)}+{name}"
    return name


def _module_of(node: fx.Node) -> str:
    """The module path that computes `node`; an activation fused into a conv is the conv's."""
    source = node.args[0] if node.target in _ACTIVATIONS and isinstance(node.args[0], fx.Node) else None
    if source is not None and source.op == "call_function" and len(source.users) == 1:
        return _module_of(source)
    stack = node.meta.get("nn_module_stack") or {}
    return next(reversed(stack.values()))[0] if stack else f"({node.name})"


def _quantized_outputs(graph: fx.GraphModule) -> dict[str, fx.Node]:
    """Operator name -> the quantize that closes it, for every operator whose output is an int8 tensor."""
    closed = {}
    for node in graph.graph.nodes:
        if node.op == "call_function" and str(node.target).startswith(_QUANTIZE):
            source = node.args[0]
            if isinstance(source, fx.Node) and source.op == "call_function" and _base_name(source) not in _NOT_LAYERS:
                closed[source.name] = node
    return closed


class _Recorder(fx.Interpreter):
    """Runs a graph and keeps every node's value."""

    def __init__(self, graph: fx.GraphModule) -> None:
        super().__init__(graph)
        self.values: dict[str, Any] = {}

    def run_node(self, n: fx.Node) -> Any:
        value = super().run_node(n)
        self.values[n.name] = value
        return value


def _int8_value(q: fx.Node, values: dict[str, Any]) -> tuple[torch.Tensor, float, int]:
    """The dequantized int8 tensor a quantize makes, with its scale and zero point."""
    arguments: list[Any] = [values.get(a.name, a) if isinstance(a, fx.Node) else a for a in q.args[:5]]
    x, scale, zero_point, low, high = arguments
    step, zero = float(scale), int(zero_point)
    codes = torch.clamp(torch.round(x / step) + zero, int(low), int(high))
    return (codes - zero) * step, step, zero


def _local(node: fx.Node, float_graph: fx.GraphModule, boundaries: dict[str, torch.Tensor], image: torch.Tensor):
    """`node` of the float graph computed from the int8 tensors at the unit's boundaries, in float."""
    memo: dict[str, Any] = {}

    def value(n: Any) -> Any:
        if isinstance(n, (list, tuple)):
            return type(n)(value(a) for a in n)
        if not isinstance(n, fx.Node):
            return n
        if n.name in memo:
            return memo[n.name]
        if n is not node and n.name in boundaries:
            result = boundaries[n.name]
        elif n.op == "placeholder":
            result = image
        elif n.op == "get_attr":
            owner: Any = float_graph
            for part in str(n.target).split("."):
                owner = getattr(owner, part)
            result = owner
        else:
            args = [value(a) for a in n.args]
            kwargs = {k: value(v) for k, v in n.kwargs.items()}
            function: Any = n.target
            result = function(*args, **kwargs)
        memo[n.name] = result
        return result

    return value(node)


def inspect_pte(
    root: Path, manifest: Manifest, record: ArtifactRecord, images: np.ndarray, source: str, backbone: nn.Module
) -> Int8Inspection:
    """Per int8 tensor of the int8 `.pte` `record`, its error against the PyTorch `backbone` on `images`."""
    from edgecnn.formats.executorch import Runner, int8_network, quantize

    repair = record.details.repair if isinstance(record.details, ExecuTorchDetails) else None
    if repair is not None and repair.fine_tuning is not None and repair.fine_tuning.kept:
        # its weights were trained at export and are inside the delegate: a graph rebuilt from the network
        # would be another program's
        raise UsageError(
            f"{record.path}: its weights were fine-tuned at export, so its quantized graph cannot be rebuilt "
            "for inspection; inspect the int8 TFLite, or export again with --int8-repair none"
        )
    calibration = calibration_images(manifest)
    encoding, backbone = made_from(record, manifest, backbone, calibration)
    sample = _decoded(encoding, calibration[:1])
    with console.step(f"{record.path}: quantized graph rebuilt"):
        quantized, float_graph = quantize(int8_network(backbone, sample), calibration, encoding, keep_float=True)
    assert float_graph is not None
    closed = _quantized_outputs(quantized)
    float_nodes = {n.name: n for n in float_graph.graph.nodes}
    layers_at = [n for n in quantized.graph.nodes if n.name in closed and n.name in float_nodes]
    if not layers_at:
        raise UsageError(f"{record.path}: the quantized graph has no int8 operator the float graph names")
    local = {n.name: Errors() for n in layers_at}
    accumulated = {n.name: Errors() for n in layers_at}
    quantization: dict[str, tuple[float, int]] = {}
    runtime, graph_logits = Errors(), []
    runner = Runner(root / record.path, record, threads=1)
    on_runtime = runner.run(images)
    for image, from_runtime in zip(
        console.track(images, f"{record.path}: every int8 tensor on {len(images)} images"), on_runtime
    ):
        checkpoint()
        decoded = _decoded(encoding, image[None])
        with torch.no_grad():
            int8_run, float_run = _Recorder(quantized), _Recorder(float_graph)
            logits = int8_run.run(decoded)
            float_run.run(decoded)
            boundaries = {}
            for node in layers_at:
                boundaries[node.name], step, zero = _int8_value(closed[node.name], int8_run.values)
                quantization[node.name] = (step, zero)
            for node in layers_at:
                y_q = boundaries[node.name].numpy()
                y_float = float_run.values[node.name].numpy()
                y_local = _local(float_nodes[node.name], float_graph, boundaries, decoded).numpy()
                local[node.name].add(np.moveaxis(y_local, 1, -1), np.moveaxis(y_q, 1, -1))
                acc = accumulated[node.name]
                acc.add(np.moveaxis(y_float, 1, -1), np.moveaxis(y_q, 1, -1))
                acc.count += y_float.size
                scale, zero_point = quantization[node.name]
                low, high = (-128 - zero_point) * scale, (127 - zero_point) * scale
                acc.clipped += int(np.sum((y_float < low) | (y_float > high)))
        logits = logits[0] if isinstance(logits, (list, tuple)) else logits
        graph_logits.append(logits.numpy()[0])
        runtime.add(logits.numpy(), from_runtime[None])
    if runtime.cosine() < RUNTIME_MIN_COSINE:
        raise UsageError(
            f"the quantized graph rebuilt for {record.path} does not reproduce ExecuTorch's output (logits cosine "
            f"{runtime.cosine():.6f}): the program was not made from this network and calibration"
        )
    out_q = record.output.quantization
    same_codes, code_difference = None, None
    if out_q is not None:  # XNNPACK rounds in integers, the graph in float: codes may differ by one
        codes = lambda y: np.clip(np.round(np.asarray(y) / out_q.scale) + out_q.zero_point, -128, 127)  # noqa: E731
        difference = np.abs(codes(np.stack(graph_logits)) - codes(on_runtime))
        same_codes, code_difference = float(np.mean(difference == 0)), int(difference.max())
    layers: list[LayerError] = []
    for node in layers_at:
        acc = accumulated[node.name]
        scale, zero_point = quantization[node.name]
        layers.append(
            LayerError(
                index=len(layers),
                module=_module_of(node),
                op=_op_name(node),
                local_sqnr_db=local[node.name].channel_sqnr_db(),
                local_cosine=round(local[node.name].cosine(), 6),
                sqnr_db=acc.sqnr_db(),
                cosine=round(acc.cosine(), 6),
                scale=scale,
                zero_point=zero_point,
                rmse_over_scale=round(acc.rmse() / scale, 4) if scale else 0.0,
                clipped_fraction=round(acc.clipped / max(acc.count, 1), 6),
            )
        )
    replay = _replay_cosine(float_graph, backbone, images, encoding)
    return Int8Inspection(
        manifest.variant,
        record.path,
        int(len(images)),
        source,
        replay,
        layers,
        method=METHOD,
        runtime_cosine=round(runtime.cosine(), 6),
        runtime_same_codes=None if same_codes is None else round(same_codes, 6),
        runtime_code_difference=code_difference,
    )


def _decoded(encoding: Int8InputEncoding, images: np.ndarray) -> torch.Tensor:
    """uint8 NHWC images as the int8 program sees them: on the input's int8 grid, NCHW."""
    return torch.from_numpy(encoding.decode(encoding.encode(images))).permute(0, 3, 1, 2).contiguous()


def _replay_cosine(float_graph: fx.GraphModule, backbone: nn.Module, images: np.ndarray, encoding) -> float:
    """The float graph's logits against PyTorch's network on the same decoded images."""
    check = Errors()
    with torch.no_grad():
        for image in images:
            decoded = _decoded(encoding, image[None])
            check.add(backbone(decoded).numpy(), float_graph(decoded).numpy())
    return round(check.cosine(), 6)


__all__ = ["inspect_pte", "METHOD"]
