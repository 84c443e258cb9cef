"""Remedies for int8 error that keep the network's float function: applied to a copy before quantization.

- Cross-layer range equalisation (Nagel et al. 2019, data-free quantization): for a conv -> (BatchNorm)
  -> ReLU -> conv pair, scale output channel i of the first by 1/s_i and input channel i of the second by
  s_i, with s_i = sqrt(r1_i / r2_i) from the two channels' weight ranges. ReLU is positively homogeneous
  (relu(x / s) = relu(x) / s), so the function is exact; per-tensor activations and weights then spend
  their 256 levels on channels of like range. ReLU6 and other clipping activations are not homogeneous
  and are left alone.
- Concat range equalisation: int8 gives a concatenation one scale; where only BatchNorms read it
  (DenseNet), each source channel is scaled up to the group's widest range and the readers divide it
  out (what it gains on trained DenseNet-121: docs/int8.md).
- Bias correction: int8 rounds every weight; the mean output shift this causes, (W_q - W) E[x], is
  taken out of the bias, E[x] measured on the calibration images.

Activation ranges are already chosen by error: the PT2E quantizer's histogram observer searches the
range that minimises the L2 quantization error of each tensor, rather than taking min and max.
"""

from __future__ import annotations

import copy
from typing import Optional, cast

import numpy as np
import torch
from torch import fx, nn

from edgecnn.passes.modules import following_batchnorms, trace_modules

_HOMOGENEOUS = (nn.ReLU, nn.Identity, nn.Dropout)
_HOMOGENEOUS_FUNCTIONS = {torch.relu, torch.nn.functional.relu}


def _conv_pairs(model: nn.Module) -> list[tuple[str, Optional[str], str]]:
    """(first conv, its BatchNorm or None, second conv) joined by a ReLU and nothing else."""
    traced = trace_modules(model)
    if traced is None:
        return []
    graph = traced.graph
    modules = dict(model.named_modules())

    def module(node):
        return modules[node.target] if isinstance(node, fx.Node) and node.op == "call_module" else None

    def only_user(node):
        return next(iter(node.users)) if len(node.users) == 1 else None

    pairs = []
    for node in graph.nodes:
        first = module(node)
        if not isinstance(first, nn.Conv2d) or first.groups != 1 and first.groups != first.out_channels:
            continue
        step, norm = only_user(node), None
        if step is not None and isinstance(module(step), nn.BatchNorm2d):
            norm, step = step.target, only_user(step)
        relu = False
        while step is not None and (
            isinstance(module(step), _HOMOGENEOUS)
            or step.op == "call_function"
            and step.target in _HOMOGENEOUS_FUNCTIONS
        ):
            relu = relu or isinstance(module(step), nn.ReLU) or step.op == "call_function"
            step = only_user(step)
        second = module(step) if step is not None else None
        if not relu or not isinstance(second, nn.Conv2d) or step.args[0] is None:
            continue
        depthwise = second.groups == second.in_channels == second.out_channels
        if second.groups == 1 or depthwise:
            pairs.append((node.target, norm, step.target))
    return pairs


def _output_ranges(conv: nn.Conv2d, norm: Optional[nn.BatchNorm2d]) -> torch.Tensor:
    weight = conv.weight.detach().abs().flatten(1).amax(1)
    if norm is not None:
        weight = (
            weight * (norm.weight.detach().abs() if norm.affine else 1.0) * torch.rsqrt(norm.running_var + norm.eps)
        )
    return weight


def equalize_cross_layer(model: nn.Module, rounds: int = 3) -> tuple[nn.Module, int]:
    """An equalised copy of `model` and the number of conv pairs equalised. Exact in float."""
    model = copy.deepcopy(model).eval()
    pairs = _conv_pairs(model)
    modules = dict(model.named_modules())
    with torch.no_grad():
        for _ in range(rounds):  # a conv in two pairs (as first and as second) settles over a few rounds
            for first_name, norm_name, second_name in pairs:
                first, second = modules[first_name], modules[second_name]
                norm = modules[norm_name] if norm_name else None
                r1 = _output_ranges(first, norm)
                depthwise = second.groups > 1
                r2 = (
                    second.weight.abs().flatten(1).amax(1)
                    if depthwise
                    else second.weight.abs().transpose(0, 1).flatten(1).amax(1)
                )
                live = (r1 > 0) & (r2 > 0)
                s = torch.where(live, torch.sqrt(r1 / r2.clamp_min(1e-12)), torch.ones_like(r1))
                if norm is not None:  # the BatchNorm's output is what the ReLU and the next conv see
                    norm.weight.div_(s)
                    norm.bias.div_(s)
                else:
                    first.weight.div_(s.reshape(-1, 1, 1, 1))
                    if first.bias is not None:
                        first.bias.div_(s)
                shape = (-1, 1, 1, 1) if depthwise else (1, -1, 1, 1)
                second.weight.mul_(s.reshape(shape))
    return model, len(pairs)


_CONCATS = {torch.cat, torch.concat}
_COMMUTES_WITH_SCALE = (nn.ReLU, nn.MaxPool2d, nn.AvgPool2d, nn.Identity, nn.Dropout)  # f(s x) = s f(x), s > 0
_CONCAT_SCALE_CAP = 32.0  # a channel nearly silent on the calibration images is not blown up past this
# Channels are scaled to this fraction of the group's widest range, not all of it: a peak seen on the
# calibration images is a low estimate, and a channel scaled right up to the shared range clips beyond it
# (0.75 measured best on trained DenseNet-121 against 1.0 and 0.5: docs/int8.md).
_CONCAT_HEADROOM = 0.75


def _concat_groups(graph: fx.Graph) -> list[list[fx.Node]]:
    """Channel concatenations (dim 1) that feed one another, each group's nodes in graph order: int8
    gives every tensor of a group one shared scale."""
    parent: dict[fx.Node, fx.Node] = {}

    def root(node):
        while parent.get(node, node) is not node:
            node = parent[node]
        return node

    for node in graph.nodes:
        if (
            node.op == "call_function"
            and node.target in _CONCATS
            and node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0) == 1
        ):
            parent.setdefault(node, node)
            for source in node.args[0]:
                parent.setdefault(source, source)
                parent[root(source)] = root(node)
    groups: dict[fx.Node, list[fx.Node]] = {}
    for node in graph.nodes:
        if node in parent:
            groups.setdefault(root(node), []).append(node)
    return list(groups.values())


def _scalable_source(node: fx.Node, modules: dict[str, nn.Module]) -> Optional[str]:
    """The conv or BatchNorm whose output channels can be scaled by s > 0 to scale `node`'s by s, through
    ops that commute with a positive scale and have no other user; None if there is none."""
    while node.op == "call_module":
        module = modules[node.target]
        if isinstance(module, (nn.Conv2d, nn.BatchNorm2d)):
            name = cast(str, node.target)  # fx types targets as callable or str; call_module's is a name
            return name if not isinstance(module, nn.BatchNorm2d) or module.affine else None
        if not isinstance(module, _COMMUTES_WITH_SCALE):
            return None
        source = node.args[0]
        if not isinstance(source, fx.Node) or len(source.users) != 1:
            return None
        node = source
    return None


def equalize_concat_ranges(model: nn.Module, batches: list[torch.Tensor]) -> tuple[nn.Module, int]:
    """A copy of `model` whose concatenated channels share one range, and how many concats took part.

    int8 gives a concatenation one scale for all its inputs, so a channel of small range keeps few of
    the 256 levels; when only BatchNorms read the concatenation (DenseNet's pre-activation layers), each
    scales that channel back up and its rounding error with it. Scaling each source channel by
    s = 0.75 (the group's largest range) / (its range) at its conv or BatchNorm, and dividing it out in every
    reading BatchNorm (mean * s, var * s^2 + eps (s^2 - 1)), is exact in float.
    """
    model = copy.deepcopy(model).eval()
    traced = trace_modules(model)
    if traced is None:
        return model, 0
    modules = dict(model.named_modules())
    plans = []
    for group in _concat_groups(traced.graph):
        members = set(group)
        readers = [user for node in group for user in node.users if user not in members]
        if not readers or not all(
            user.op == "call_module" and isinstance(modules[user.target], nn.BatchNorm2d) for user in readers
        ):
            continue
        leaves = [node for node in group if not (node.op == "call_function" and node.target in _CONCATS)]
        sources = {leaf: _scalable_source(leaf, modules) for leaf in leaves}
        calls = [u.target for u in traced.graph.nodes if u.op == "call_module"]
        if any(leaf.op != "call_module" or calls.count(leaf.target) != 1 for leaf in leaves):
            continue  # a leaf's range is read by a hook on its module, which must run once
        if any(calls.count(reader.target) != 1 for reader in readers):
            continue  # a BatchNorm that runs twice cannot take two sets of scales
        plans.append((group, leaves, sources, readers))
    if not plans:
        return model, 0
    ranges: dict[str, torch.Tensor] = {}

    def hook(name):
        def record(_module, _inputs, output):
            peak = output.detach().abs().amax((0, 2, 3))
            ranges[name] = torch.maximum(ranges[name], peak) if name in ranges else peak

        return record

    handles = [
        modules[leaf.target].register_forward_hook(hook(leaf.target)) for _, leaves, _, _ in plans for leaf in leaves
    ]
    try:
        with torch.no_grad():
            for batch in batches:
                model(batch)
    finally:
        for handle in handles:
            handle.remove()
    with torch.no_grad():
        for _group, leaves, sources, readers in plans:
            widest = max(float(ranges[leaf.target].max()) for leaf in leaves)
            scale: dict[fx.Node, torch.Tensor] = {}
            for leaf in leaves:
                peak = ranges[leaf.target]
                s = torch.where(
                    peak > 0,
                    (_CONCAT_HEADROOM * widest / peak.clamp_min(1e-12)).clamp(1.0, _CONCAT_SCALE_CAP),
                    torch.ones_like(peak),
                )
                if sources[leaf] is None:
                    s = torch.ones_like(peak)
                scale[leaf] = s
                source = modules[sources[leaf]] if sources[leaf] is not None else None
                if isinstance(source, nn.Conv2d):
                    source.weight.mul_(s.reshape(-1, 1, 1, 1))
                    if source.bias is not None:
                        source.bias.mul_(s)
                elif isinstance(source, nn.BatchNorm2d):
                    source.weight.mul_(s)
                    source.bias.mul_(s)

            def channel_scales(node: fx.Node, scale: dict[fx.Node, torch.Tensor] = scale) -> torch.Tensor:
                if node in scale:
                    return scale[node]
                return torch.cat([channel_scales(source) for source in node.args[0]])

            for reader in readers:
                norm = modules[reader.target]
                s = channel_scales(reader.args[0])
                norm.running_var.copy_(norm.running_var * s**2 + norm.eps * (s**2 - 1))
                norm.running_mean.mul_(s)
    return model, len(plans)


def _int8_weights(weight: torch.Tensor) -> torch.Tensor:
    """Symmetric per-output-channel int8 rounding, as the quantizer does it (levels -127..127)."""
    scale = weight.abs().flatten(1).amax(1).clamp_min(1e-12) / 127.0
    shape = (-1,) + (1,) * (weight.dim() - 1)
    return torch.round(weight / scale.reshape(shape)).clamp(-127, 127) * scale.reshape(shape)


def correct_bias(model: nn.Module, batches: list[torch.Tensor]) -> tuple[nn.Module, int]:
    """`model` (changed in place) with each conv's and Linear's bias less its int8 weights' mean shift.

    A conv followed by a BatchNorm is rounded as the two folded into one: the shift is measured on the
    folded weights and taken out of the BatchNorm's bias.
    """
    norms = following_batchnorms(model, batches[0][:1] if batches else None)
    layers = {name: m for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    means: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}

    def hook(name):
        def record(_module, inputs, _output):
            x = inputs[0].detach()
            dims = [0, 2, 3] if x.dim() == 4 else [0]
            means[name] = means.get(name, 0) + x.mean(dims) * x.shape[0]
            counts[name] = counts.get(name, 0) + x.shape[0]

        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in layers.items()]
    try:
        with torch.no_grad():
            for batch in batches:
                model(batch)
    finally:
        for h in handles:
            h.remove()
    with torch.no_grad():
        for name, layer in layers.items():
            if name not in means:
                continue
            mean = means[name] / counts[name]
            norm = norms.get(name)
            weight = layer.weight
            if norm is not None:
                if not norm.affine:
                    continue
                weight = weight * (norm.weight * torch.rsqrt(norm.running_var + norm.eps)).reshape(-1, 1, 1, 1)
            error = _int8_weights(weight) - weight
            if isinstance(layer, nn.Conv2d):
                groups = layer.groups
                per_group = layer.in_channels // groups
                x = mean.reshape(groups, per_group)  # each output channel sees its group's inputs
                summed = error.sum((2, 3)).reshape(groups, -1, per_group)
                shift = (summed * x[:, None, :]).sum(-1).reshape(-1)
            else:
                shift = error @ mean
            if norm is not None:
                norm.bias.sub_(shift)
                continue
            if layer.bias is None:
                layer.bias = nn.Parameter(torch.zeros(layer.weight.shape[0], dtype=layer.weight.dtype))
            layer.bias.sub_(shift)
    return model, len(means)


def apply_remedies(
    backbone: nn.Module, calibration: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]
) -> tuple[nn.Module, list[str]]:
    """A copy of `backbone` equalised and bias-corrected, and the remedies in words.

    Deterministic in the network and the uint8 calibration images, so that what an export applied can be
    applied again to replay the int8 file it made (`edgecnn inspect-int8`)."""
    from edgecnn.data.preprocess import Int8InputEncoding

    equalized, pairs = equalize_cross_layer(backbone)
    encoding = Int8InputEncoding.for_normalization(mean, std)
    batch = torch.from_numpy(encoding.decode(encoding.encode(calibration))).permute(0, 3, 1, 2)
    batches = [batch[i : i + 32] for i in range(0, len(batch), 32)]
    equalized, groups = equalize_concat_ranges(equalized, batches)
    corrected, layers = correct_bias(equalized, batches)
    return corrected, ([f"cross-layer equalisation ({pairs} conv pairs)"] if pairs else []) + (
        [f"concat range equalisation ({groups} concatenations)"] if groups else []
    ) + [f"bias correction ({layers} layers)"]
