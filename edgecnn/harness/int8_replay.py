"""The int8 TFLite graph, replayed in float with the PyTorch network's own weights.

The inspector needs, for every int8 operator, what the float network computes there: fed the
dequantized int8 inputs (the operator's own error) and fed float all the way from the image (the
accumulated error). Both come from one replay of the int8 graph's own operators, in graph order, in
float: the operator semantics are TFLite's (read from the flatbuffer: padding, strides, fused
activations), the weights are PyTorch's (each conv and Linear found by the module path litert-torch
writes into its weight tensor's name, a following BatchNorm folded in). The int8 values themselves
come from LiteRT's execution; nothing of its integer kernels is re-implemented.

The replay must give PyTorch's logits from the image: `FloatReplay.check` measures it, and an
inspection whose replay does not reproduce PyTorch is refused, not reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgecnn.formats.litert import module_path
from edgecnn.passes.aten import average_pool_weight, batchnorm_as_conv
from edgecnn.passes.modules import following_batchnorms
from edgecnn.util.errors import UsageError

# operators that move or copy values: exact in int8, so never a layer of their own in the report
DATA_MOVEMENT = {"PAD", "PADV2", "TRANSPOSE", "RESHAPE", "SQUEEZE", "DEQUANTIZE", "EXPAND_DIMS"}
_ACTIVATIONS = {0: lambda y: y, 1: F.relu, 2: lambda y: y.clamp(-1, 1), 3: lambda y: y.clamp(0, 6), 4: torch.tanh}


@dataclass(frozen=True)
class GraphOp:
    index: int
    kind: str  # the TFLite builtin operator, e.g. CONV_2D
    inputs: tuple[int, ...]  # tensor indices, -1 for an omitted optional input
    outputs: tuple[int, ...]
    options: dict


def read_graph(path: Path) -> list[GraphOp]:
    """The operators of the main subgraph, in execution order, with their builtin options."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(path.read_bytes(), 0)
    names = {value: name for name, value in vars(schema.BuiltinOperator).items() if not name.startswith("_")}
    ops = []
    for index, op in enumerate(model.subgraphs[0].operators):
        code = model.operatorCodes[op.opcodeIndex]
        kind = names[max(code.builtinCode, code.deprecatedBuiltinCode)]
        options = dict(vars(op.builtinOptions)) if op.builtinOptions is not None else {}
        ops.append(GraphOp(index, kind, tuple(int(i) for i in op.inputs), tuple(int(i) for i in op.outputs), options))
    return ops


def _same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def _spatial_padding(x: torch.Tensor, kernel: tuple[int, int], options: dict, dilation=(1, 1)) -> list[int]:
    """F.pad's (left, right, top, bottom) for TFLite's SAME (0) or VALID (1) on an NCHW tensor."""
    if options["padding"] == 1:
        return [0, 0, 0, 0]
    top, bottom = _same_padding(x.shape[2], kernel[0], options["strideH"], dilation[0])
    left, right = _same_padding(x.shape[3], kernel[1], options["strideW"], dilation[1])
    return [left, right, top, bottom]


def _as_depthwise_conv(module: nn.Module, shape: tuple) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """(weight, bias) of the depthwise conv an average pool or BatchNorm became, for TFLite weights of `shape`
    (1, kh, kw, channels)."""
    if isinstance(module, nn.AvgPool2d):
        return average_pool_weight([int(shape[1]), int(shape[2])], int(shape[3])), None
    assert isinstance(module, nn.BatchNorm2d)
    gamma, beta = (module.weight, module.bias) if module.affine else (None, None)
    return batchnorm_as_conv(gamma, beta, module.running_mean, module.running_var, module.eps)


def _nchw(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 3, 1, 2)


def _nhwc(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 2, 3, 1)


class FloatReplay:
    """The float function of every operator of an int8 graph, with the network's float weights."""

    def __init__(self, interpreter, ops: list[GraphOp], backbone: nn.Module, sample: torch.Tensor) -> None:
        self.interpreter = interpreter
        self.ops = ops
        self.tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
        self.modules = dict(backbone.named_modules())
        self._folded_norm = following_batchnorms(backbone, sample)
        self.weights: dict[int, tuple[torch.Tensor, Optional[torch.Tensor]]] = {}
        self.module_of: dict[int, str] = {}
        self._map_weights()

    # -- which PyTorch module each weighted operator is ------------------------------------------------
    def _map_weights(self) -> None:
        unnamed_linears = [path for path, m in self.modules.items() if isinstance(m, nn.Linear)]
        for op in self.ops:
            if op.kind not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
                continue
            shape = tuple(self.tensors[op.inputs[1]]["shape"])
            path = module_path(self.tensors[op.inputs[1]]["name"])
            if path not in self.modules and op.kind == "FULLY_CONNECTED":
                # the classifier's weight is often named after the export wrapper: the Linear of that shape
                path = next((p for p in unnamed_linears if tuple(self.modules[p].weight.shape) == shape), None)
            module = self.modules.get(path)
            if op.kind == "DEPTHWISE_CONV_2D" and isinstance(module, (nn.AvgPool2d, nn.BatchNorm2d)):
                # a pool or a BatchNorm the int8 passes wrote as a depthwise conv (`passes.aten`)
                self.weights[op.index] = _as_depthwise_conv(module, shape)
                self.module_of[op.index] = str(path)
                continue
            if path is None or not isinstance(module, (nn.Conv2d, nn.Linear)):
                raise UsageError(
                    f"int8 operator {op.index} ({op.kind}) maps to no conv or Linear of the PyTorch "
                    f"network (weight tensor {self.tensors[op.inputs[1]]['name'][:80]!r})"
                )
            if isinstance(module, nn.Linear) and path in unnamed_linears:
                unnamed_linears.remove(path)
            weight, bias = self._folded(path, module)
            layout = {"CONV_2D": (0, 2, 3, 1), "DEPTHWISE_CONV_2D": (1, 2, 3, 0), "FULLY_CONNECTED": None}[op.kind]
            expected = tuple(weight.permute(*layout).shape) if layout else tuple(weight.shape)
            if expected != shape:
                raise UsageError(
                    f"int8 operator {op.index} ({op.kind}, weights {list(shape)}) does not match "
                    f"{path} ({list(expected)})"
                )
            self.weights[op.index] = (weight, bias)
            self.module_of[op.index] = path

    def _folded(self, path: str, module: nn.Module) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        weight = module.weight.detach().float()
        bias = module.bias.detach().float() if module.bias is not None else None
        norm = self._folded_norm.get(path)
        if norm is None:
            return weight, bias
        scale = (norm.weight.detach() if norm.affine else 1.0) * torch.rsqrt(norm.running_var + norm.eps)
        shift = norm.bias.detach() if norm.affine else 0.0
        bias = ((bias if bias is not None else 0.0) - norm.running_mean) * scale + shift
        return weight * scale.reshape(-1, *([1] * (weight.dim() - 1))), bias.float()

    # -- operator semantics ---------------------------------------------------------------------------
    def constant(self, index: int) -> np.ndarray:
        return self.interpreter.get_tensor(index)

    def run(self, op: GraphOp, xs: list[Optional[torch.Tensor]]) -> torch.Tensor:
        handler = _HANDLERS.get(op.kind)
        if handler is None:
            raise UsageError(f"the int8 graph has a {op.kind} operator, which the float replay does not know")
        out = handler(self, op, xs)
        shape = tuple(self.tensors[op.outputs[0]]["shape"])
        if tuple(out.shape) != shape:
            raise UsageError(
                f"float replay of operator {op.index} ({op.kind}) gave shape {list(out.shape)}, the "
                f"int8 graph has {list(shape)}"
            )
        return out


def _act(op: GraphOp, y: torch.Tensor) -> torch.Tensor:
    return _ACTIVATIONS[op.options.get("fusedActivationFunction", 0)](y)


def _conv(replay: FloatReplay, op: GraphOp, xs) -> torch.Tensor:
    weight, bias = replay.weights[op.index]
    x = _nchw(xs[0])
    dilation = (op.options.get("dilationHFactor", 1), op.options.get("dilationWFactor", 1))
    x = F.pad(x, _spatial_padding(x, tuple(weight.shape[2:]), op.options, dilation))
    groups = x.shape[1] // weight.shape[1]
    y = F.conv2d(x, weight, bias, (op.options["strideH"], op.options["strideW"]), 0, dilation, groups)
    return _act(op, _nhwc(y))


def _fully_connected(replay: FloatReplay, op: GraphOp, xs) -> torch.Tensor:
    weight, bias = replay.weights[op.index]
    y = F.linear(xs[0].reshape(-1, weight.shape[1]), weight, bias)
    return _act(op, y.reshape(tuple(replay.tensors[op.outputs[0]]["shape"])))


def _pool(kind: str) -> Callable:
    def run(replay: FloatReplay, op: GraphOp, xs) -> torch.Tensor:
        x = _nchw(xs[0])
        kernel = (op.options["filterHeight"], op.options["filterWidth"])
        stride = (op.options["strideH"], op.options["strideW"])
        padding = _spatial_padding(x, kernel, op.options)
        if kind == "max":
            y = F.max_pool2d(F.pad(x, padding, value=float("-inf")), kernel, stride)
        else:  # TFLite's average leaves SAME padding out of the count
            ones = torch.ones_like(x[:, :1])
            y = F.avg_pool2d(F.pad(x, padding), kernel, stride) / F.avg_pool2d(F.pad(ones, padding), kernel, stride)
        return _act(op, _nhwc(y))

    return run


def _reduce(kind: str) -> Callable:
    def run(replay: FloatReplay, op: GraphOp, xs) -> torch.Tensor:
        axes = [int(a) for a in np.atleast_1d(replay.constant(op.inputs[1]))]
        keep = bool(op.options.get("keepDims", False))
        return xs[0].mean(dim=axes, keepdim=keep) if kind == "mean" else xs[0].sum(dim=axes, keepdim=keep)

    return run


def _pad(replay: FloatReplay, op: GraphOp, xs) -> torch.Tensor:
    pads = replay.constant(op.inputs[1]).astype(int)
    value = 0.0
    if op.kind == "PADV2":
        detail = replay.tensors[op.inputs[2]]
        q = replay.constant(op.inputs[2])
        scale, zero_point = detail["quantization"]
        # the int8 minimum stands for -inf (a max pool's padding)
        value = (
            float("-inf")
            if q.dtype == np.int8 and int(q.ravel()[0]) == -128
            else float((q.astype(np.float32).ravel()[0] - zero_point) * scale if scale else q.ravel()[0])
        )
    flat = [int(v) for pair in pads[::-1] for v in pair]
    return F.pad(xs[0], flat, value=value)


_HANDLERS: dict[str, Callable] = {
    "CONV_2D": _conv,
    "DEPTHWISE_CONV_2D": _conv,
    "FULLY_CONNECTED": _fully_connected,
    "MAX_POOL_2D": _pool("max"),
    "AVERAGE_POOL_2D": _pool("average"),
    "MEAN": _reduce("mean"),
    "SUM": _reduce("sum"),  # a mean over a 1x1 grid (MobileNetV3's squeeze-excite at 32 px) lowers to SUM
    "PAD": _pad,
    "PADV2": _pad,
    "ADD": lambda r, op, xs: _act(op, xs[0] + xs[1]),
    "SUB": lambda r, op, xs: _act(op, xs[0] - xs[1]),
    "MUL": lambda r, op, xs: _act(op, xs[0] * xs[1]),
    "CONCATENATION": lambda r, op, xs: _act(op, torch.cat(xs, op.options["axis"])),
    "TRANSPOSE": lambda r, op, xs: xs[0].permute(*[int(p) for p in r.constant(op.inputs[1])]),
    "RESHAPE": lambda r, op, xs: xs[0].reshape(tuple(r.tensors[op.outputs[0]]["shape"])),
    "SQUEEZE": lambda r, op, xs: xs[0].reshape(tuple(r.tensors[op.outputs[0]]["shape"])),
    "QUANTIZE": lambda r, op, xs: xs[0],
    "DEQUANTIZE": lambda r, op, xs: xs[0],
    "RELU": lambda r, op, xs: F.relu(xs[0]),
    "RELU6": lambda r, op, xs: xs[0].clamp(0, 6),
    "LOGISTIC": lambda r, op, xs: torch.sigmoid(xs[0]),
    "HARD_SWISH": lambda r, op, xs: xs[0] * (xs[0] + 3).clamp(0, 6) / 6,
    "TANH": lambda r, op, xs: torch.tanh(xs[0]),
    "MAXIMUM": lambda r, op, xs: torch.maximum(xs[0], xs[1]),
    "MINIMUM": lambda r, op, xs: torch.minimum(xs[0], xs[1]),
    "SOFTMAX": lambda r, op, xs: torch.softmax(op.options.get("beta", 1.0) * xs[0], -1),
}
