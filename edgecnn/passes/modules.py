"""Rewrites of a network's modules into the same function, where the rewrite needs the module itself.

Only one is left here: an adaptive average pool to a larger grid than it is given (VGG's 7x7 below 224 px)
repeats values, which int8 cannot express; it is linear, so it folds into the Linear layer after the
flatten, exactly. The folded Linear is smaller too (VGG-16 at 64 px: 2x2x512 inputs instead of 7x7x512).
Everything else that keeps XNNPACK's graph in one piece is a pass on the torch.export graph (`passes.aten`),
so that it reaches models torch.fx cannot trace.

The torch.fx trace also serves the analyses that read a model's data flow by module (which BatchNorm
follows which conv, which convs a ReLU joins: `int8.remedies`).
"""

from __future__ import annotations

import copy
from collections import Counter
from typing import Optional

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from edgecnn.passes.aten import batchnorms_after_convs
from edgecnn.util import console

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


def _replace(model: nn.Module, target: str, module: nn.Module) -> None:
    parent, _, name = target.rpartition(".")
    setattr(model.get_submodule(parent), name, module)


def for_xnnpack(model: nn.Module, sample: torch.Tensor) -> nn.Module:
    """An eval-mode copy of `model` with each adaptive average pool to a larger grid than `sample` gives it
    folded into the Linear after it (the model itself where torch.fx cannot trace it)."""
    model = copy.deepcopy(model).eval()
    traced = trace_modules(model)
    if traced is None:
        return model
    ShapeProp(traced).propagate(sample)
    modules = dict(model.named_modules())
    calls = Counter(node.target for node in traced.graph.nodes if node.op == "call_module")
    for node in traced.graph.nodes:
        module = modules.get(node.target) if node.op == "call_module" else None
        if not isinstance(module, nn.AdaptiveAvgPool2d) or calls[node.target] != 1:  # a pool used once only
            continue
        shape = node.args[0].meta["tensor_meta"].shape
        out = _pair(module.output_size)
        linear = _flatten_then_linear(node, modules)
        if linear is not None and None not in out and (shape[2] < out[0] or shape[3] < out[1]):
            folded = fold_adaptive_pool_into_linear(module, modules[linear.target], shape[1], (shape[2], shape[3]))
            _replace(model, linear.target, folded)
            _replace(model, node.target, nn.Identity())
    return model


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
