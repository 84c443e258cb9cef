"""Rewrites of a network into the same function in operators XNNPACK runs in one piece.

LiteRT hands XNNPACK the longest runs of operators it supports; each unsupported operator ends a piece,
and every piece boundary costs a copy and a trip through the interpreter. Measured (int8, 1 thread):
DenseNet-121 alpha 0.25 at 64 px went from 5 pieces to 1, Inception-v3 from 12 to 3. Each rewrite
computes exactly what it replaces (tests/test_rewrites.py compares outputs); the PyTorch reference
and the state_dict are not touched, only the copy that is converted.

- A padded max pool lowers to PADV2 with -inf, which XNNPACK does not take. After a ReLU every value is
  at least 0, so padding with 0 gives the same maxima: a zero PAD (which XNNPACK takes) and an
  unpadded pool. The ResNets' and DenseNet's stem pool was the second piece of every such model.
- int8 AVERAGE_POOL_2D is not an XNNPACK operator at all. An average pool that counts its padding is a
  depthwise conv with weights 1/k^2, which int8 represents exactly (per-channel scale 1/(127 k^2)).
  Inception's branch pools and DenseNet's transitions were one piece boundary each.
- An adaptive average pool to a larger grid than it is given (VGG's 7x7 below 224 px) repeats values,
  which int8 cannot express; it is linear, so it folds into the Linear layer after the flatten, exactly.
  The folded Linear is smaller too (VGG-16 at 64 px: 2x2x512 inputs instead of 7x7x512).
- A BatchNorm that follows no conv (DenseNet's, on each concatenation) cannot be folded, and the int8
  quantizer leaves it in float: as a 1x1 depthwise conv it quantizes like any conv (62 float BatchNorms
  in DenseNet-121 before).
"""

from __future__ import annotations

import copy
from typing import Optional

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from edgecnn.passes.aten import batchnorms_after_convs
from edgecnn.util import console
from edgecnn.zoo.models.layers import replace_unfused_batchnorms

MAX_OPAQUE_CLASSES = 32


class _ModuleTracer(fx.Tracer):
    """torch.fx's tracer, keeping whole (as leaves) the module classes in `opaque`, and noting the innermost
    module it was tracing into when tracing failed."""

    def __init__(self, opaque: set[type]) -> None:
        super().__init__()
        self.opaque = opaque
        self.failed_in: Optional[nn.Module] = None

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return type(m) in self.opaque or super().is_leaf_module(m, module_qualified_name)

    def call_module(self, m: nn.Module, forward, args, kwargs):
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception:
            if self.failed_in is None:  # the innermost module sees the error first
                self.failed_in = m
            raise


def trace_modules(model: nn.Module) -> Optional[fx.GraphModule]:
    """`model` as a torch.fx graph of module calls, for the analyses that decide what to rewrite.

    torch.fx cannot trace into everything torch.export can (a TorchScript function, an autograd.Function):
    a module class it fails inside is kept whole, as one opaque call, and tracing starts again. The
    analyses treat an opaque call as unknown (neither sign-preserving nor a pool), so what they decide
    stays exact. None, with one note, where the model's own forward cannot be traced at all."""
    opaque: set[type] = set()
    while True:
        tracer = _ModuleTracer(opaque)
        try:
            return fx.GraphModule(model, tracer.trace(model))
        except Exception as err:
            culprit = tracer.failed_in
            if culprit is None or culprit is model or type(culprit) in opaque or len(opaque) >= MAX_OPAQUE_CLASSES:
                first = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
                console.say(
                    f"[edgecnn] note: torch.fx cannot trace {type(model).__name__}.forward ({first}): its pools and "
                    "BatchNorms are converted as written, which may split the XNNPACK graph into more pieces"
                )
                return None
            opaque.add(type(culprit))


_RELUS = (nn.ReLU, nn.ReLU6)
_RELU_FUNCTIONS = {torch.relu, torch.nn.functional.relu, torch.relu_}
_KEEPS_SIGN = (nn.MaxPool2d, nn.Identity, nn.Dropout)  # a nonnegative input stays nonnegative


class ZeroPaddedMaxPool(nn.Sequential):
    """MaxPool2d(k, s, p) on a nonnegative input, as zero padding then an unpadded pool."""

    def __init__(self, pool: nn.MaxPool2d) -> None:
        padding = pool.padding if isinstance(pool.padding, tuple) else (pool.padding, pool.padding)
        super().__init__(
            nn.ZeroPad2d((padding[1], padding[1], padding[0], padding[0])),
            nn.MaxPool2d(pool.kernel_size, pool.stride, 0, pool.dilation),
        )


def average_pool_as_depthwise_conv(pool: nn.AvgPool2d, channels: int) -> nn.Conv2d:
    kernel = _pair(pool.kernel_size)
    conv = nn.Conv2d(channels, channels, kernel, _pair(pool.stride), _pair(pool.padding), groups=channels, bias=False)
    with torch.no_grad():
        conv.weight.fill_(1.0 / (kernel[0] * kernel[1]))
    return conv


def _pair(value) -> tuple[int, int]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def fold_adaptive_pool_into_linear(
    pool: nn.AdaptiveAvgPool2d, linear: nn.Linear, channels: int, size: tuple[int, int]
) -> nn.Linear:
    """Linear(flatten(pool(x))) as one Linear on flatten(x), for x of (channels, *size)."""
    cells = size[0] * size[1]
    with torch.no_grad():
        basis = torch.eye(cells, dtype=linear.weight.dtype).reshape(cells, 1, *size)
        pooled = pool(basis).reshape(cells, -1)  # (input cell, output cell): the pool's matrix per channel
        weight = linear.weight.reshape(linear.out_features, channels, pooled.shape[1]) @ pooled.T
        folded = nn.Linear(channels * cells, linear.out_features, bias=linear.bias is not None)
        folded.weight.copy_(weight.reshape(linear.out_features, -1))
        if linear.bias is not None:
            folded.bias.copy_(linear.bias)
    return folded


def _flatten_then_linear(node: fx.Node, modules: dict[str, nn.Module]):
    """The Linear call that takes flatten(node) as its only use, or None."""
    if len(node.users) != 1:
        return None
    flatten = next(iter(node.users))
    is_flatten = (
        flatten.op == "call_module"
        and isinstance(modules[flatten.target], nn.Flatten)
        and modules[flatten.target].start_dim == 1
    ) or (flatten.op == "call_function" and flatten.target is torch.flatten and flatten.args[1:] == (1,))
    if not is_flatten or len(flatten.users) != 1:
        return None
    linear = next(iter(flatten.users))
    if linear.op == "call_module" and isinstance(modules[linear.target], nn.Linear):
        return linear
    return None


def _nonnegative(node, modules: dict[str, nn.Module]) -> bool:
    if not isinstance(node, fx.Node):
        return False
    if node.op == "call_module":
        module = modules[node.target]
        if isinstance(module, _RELUS):
            return True
        return isinstance(module, _KEEPS_SIGN) and _nonnegative(node.args[0], modules)
    if node.op == "call_function":
        if node.target in _RELU_FUNCTIONS:
            return True
        if node.target is torch.cat:
            return all(_nonnegative(n, modules) for n in node.args[0])
    return False


def _replace(model: nn.Module, target: str, module: nn.Module) -> None:
    parent, _, name = target.rpartition(".")
    setattr(model.get_submodule(parent), name, module)


def for_xnnpack(model: nn.Module, sample: torch.Tensor, *, int8: bool, pad_max_pools: bool = True) -> nn.Module:
    """An eval-mode copy of `model` rewritten as above (the average pool and BatchNorm rules for int8).

    `pad_max_pools=False` keeps padded max pools as they are, for converters that hand them to XNNPACK
    whole (ExecuTorch: the zero pad stayed a float operator there, see `formats.executorch`)."""
    model = copy.deepcopy(model).eval()
    traced = trace_modules(model)
    if traced is None:
        return model
    ShapeProp(traced).propagate(sample)
    modules = dict(model.named_modules())
    uses: dict[str, list[fx.Node]] = {}
    for node in traced.graph.nodes:
        if node.op == "call_module":
            uses.setdefault(node.target, []).append(node)
    for target, nodes in uses.items():
        module = modules[target]
        if (
            pad_max_pools
            and isinstance(module, nn.MaxPool2d)
            and not module.ceil_mode
            and _pair(module.padding) != (0, 0)
            and all(_nonnegative(n.args[0], modules) for n in nodes)
        ):
            _replace(model, target, ZeroPaddedMaxPool(module))
        elif (
            int8
            and isinstance(module, nn.AvgPool2d)
            and module.count_include_pad
            and not module.ceil_mode
            and module.divisor_override is None
        ):
            channels = {n.args[0].meta["tensor_meta"].shape[1] for n in nodes}
            if len(channels) == 1:
                _replace(model, target, average_pool_as_depthwise_conv(module, channels.pop()))
        elif isinstance(module, nn.AdaptiveAvgPool2d) and len(nodes) == 1:
            shape = nodes[0].args[0].meta["tensor_meta"].shape
            out = _pair(module.output_size)
            linear = _flatten_then_linear(nodes[0], modules)
            if linear is not None and None not in out and (shape[2] < out[0] or shape[3] < out[1]):
                _replace(
                    model,
                    linear.target,
                    fold_adaptive_pool_into_linear(module, modules[linear.target], shape[1], (shape[2], shape[3])),
                )
                _replace(model, target, nn.Identity())
    return replace_unfused_batchnorms(model, traced.graph) if int8 else model


def following_batchnorms(model: nn.Module, sample: Optional[torch.Tensor] = None) -> dict[str, nn.BatchNorm2d]:
    """conv path -> the BatchNorm that is its only user (the converter folds the two into one operator).

    Read off torch.fx's trace, or where torch.fx cannot trace the model and a `sample` input is given, off
    the torch.export graph."""
    modules = dict(model.named_modules())
    traced = trace_modules(model)
    if traced is None:
        if sample is None:
            return {}
        pairs = batchnorms_after_convs(model.eval(), sample)
        return {
            conv: modules[norm]
            for conv, norm in pairs.items()
            if isinstance(modules.get(conv), nn.Conv2d) and isinstance(modules.get(norm), nn.BatchNorm2d)
        }
    folded = {}
    for node in traced.graph.nodes:
        if node.op == "call_module" and isinstance(modules[node.target], nn.Conv2d) and len(node.users) == 1:
            user = next(iter(node.users))
            if user.op == "call_module" and isinstance(modules[user.target], nn.BatchNorm2d):
                folded[node.target] = modules[user.target]
    return folded
