"""Int8-aware fine-tuning: the weights of a converted PT2E int8 graph trained to give PyTorch's logits.

Where the int8 error is spread over every activation, no layer is to blame and float layers do not help
(EfficientNet-B0's case, measured by `make int8-error-split`: docs/int8.md). What is left is to let the
weights absorb the rounding: the graph's
own rounding is kept in the forward pass, gradients pass through it unchanged (the straight-through
estimator of quantization-aware training), and the loss is the distance to PyTorch's logits, so no labels
are needed (distillation). Activation ranges stay those of calibration; each weight's per-channel scale is
recomputed from the weight as it trains, as the int8 converter does.

The graph trained is a copy in which each quantize -> dequantize pair rounds with the same operators and
parameters and passes gradients straight through, so before training it computes exactly what the
converted graph computes. The trained weights and biases are then written back into a converted graph
of the same network, with the weight scales their new ranges give; the converter then writes the int8
file from it like any other.
"""

from __future__ import annotations

import copy
import operator
from dataclasses import dataclass
from typing import Callable, Iterator, Optional, cast

import numpy as np
import torch
from torch import fx, nn

from edgecnn.int8.float_units import is_dequantize, is_quantize

LEARNING_RATE = 1e-5  # Adam; 1e-4 made EfficientNet-B0's logit SQNR worse after an epoch (24.2 -> 22.5 dB)
EPOCHS = 1  # a second epoch added 0.05 dB on EfficientNet-B0
BATCH = 64  # what these give on EfficientNet-B0: docs/int8.md


_PER_CHANNEL = "quantized_decomposed.quantize_per_channel.default"


def _attribute(module: nn.Module, path: str):
    return operator.attrgetter(path)(module)


def _attribute_or_none(module: nn.Module, path: str) -> Optional[torch.Tensor]:
    try:
        value = _attribute(module, path)
    except AttributeError:
        return None
    return value if isinstance(value, torch.Tensor) else None


def _as_parameter(module: nn.Module, path: str) -> nn.Parameter:
    *parents, name = path.split(".")
    owner = _attribute(module, ".".join(parents)) if parents else module
    value = getattr(owner, name).detach().clone()
    owner._buffers.pop(name, None)
    owner._parameters.pop(name, None)
    if name in owner.__dict__:
        delattr(owner, name)
    parameter = nn.Parameter(value)
    owner.register_parameter(name, parameter)
    return parameter


# the smallest weight scale of litert-torch's symmetric config (its per-channel min-max observer's `eps`):
# channels of tiny weights get it, e.g. 2 of MobileNetV3-small's stem channels
WEIGHT_SCALE_FLOOR = 2.0**-12


def weight_scales(weight: torch.Tensor, axis: int, quant_min: int, quant_max: int) -> torch.Tensor:
    """Symmetric per-channel scales of a weight, as the per-channel min-max observer gives them."""
    dims = [d for d in range(weight.dim()) if d != axis]
    return (weight.detach().abs().amax(dim=dims) / ((quant_max - quant_min) / 2)).clamp(min=WEIGHT_SCALE_FLOOR)


class _StraightThrough(torch.autograd.Function):
    """Forward: the rounded value. Backward: the gradient passed to the unrounded value where rounding did
    not clip it (the straight-through estimator)."""

    @staticmethod
    def forward(ctx, value: torch.Tensor, rounded: torch.Tensor, inside: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(inside)
        return rounded

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (inside,) = ctx.saved_tensors
        return grad * inside, None, None


# The rounding itself is the converted graph's own quantize and dequantize operators, so that the trainable
# copy computes what the graph computes bit for bit: torch.fake_quantize_per_tensor_affine multiplies by a
# float32 reciprocal of the scale, and measured on MobileNetV3-small it rounded one of 500 images' tensors
# differently (0.07 on a logit).
_DECOMPOSED = torch.ops.quantized_decomposed


def _rounded_weight(
    weight: torch.Tensor, zero_points: torch.Tensor, axis: int, quant_min: int, quant_max: int, dtype: torch.dtype
) -> torch.Tensor:
    with torch.no_grad():
        scales = weight_scales(weight, axis, quant_min, quant_max)
        codes = _DECOMPOSED.quantize_per_channel.default(weight, scales, zero_points, axis, quant_min, quant_max, dtype)
        rounded = _DECOMPOSED.dequantize_per_channel.default(
            codes, scales, zero_points, axis, quant_min, quant_max, dtype
        )
    return _StraightThrough.apply(weight, rounded, torch.ones_like(weight))


def _rounded_activation(value: torch.Tensor, quantize_args: tuple, dequantize_args: tuple) -> torch.Tensor:
    scale, zero_point, quant_min, quant_max = quantize_args[:4]
    with torch.no_grad():
        codes = _DECOMPOSED.quantize_per_tensor.default(value, *quantize_args)
        rounded = _DECOMPOSED.dequantize_per_tensor.default(codes, *dequantize_args)
        unclipped = torch.round(value * (1.0 / float(scale))) + int(zero_point)
        inside = ((unclipped >= quant_min) & (unclipped <= quant_max)).to(value.dtype)
    return _StraightThrough.apply(value, rounded, inside)


def _quantized_pairs(graph: fx.GraphModule) -> Iterator[tuple[fx.Node, fx.Node]]:
    """(quantize, dequantize) pairs: a value rounded onto the int8 grid and read back."""
    for node in list(graph.graph.nodes):
        source = node.args[0] if is_dequantize(node) else None
        if isinstance(source, fx.Node) and is_quantize(source) and isinstance(source.args[0], fx.Node):
            yield source, node


def _weights(graph: fx.GraphModule) -> list[fx.Node]:
    """The weight quantizers: per-channel quantize nodes of a constant. (Constants quantized per tensor,
    such as the operands a 4-D-constant pass makes of scalars, keep their value.)"""
    return [n for n in graph.graph.nodes if str(n.target) == _PER_CHANNEL and n.args[0].op == "get_attr"]


def _biases(graph: fx.GraphModule) -> list[str]:
    found = []
    for node in graph.graph.nodes:
        if node.op == "call_function" and str(node.target) in ("aten.conv2d.default", "aten.linear.default"):
            bias = node.args[2] if len(node.args) > 2 else None
            if isinstance(bias, fx.Node) and bias.op == "get_attr":
                found.append(cast(str, bias.target))  # fx types targets as callable or str; get_attr's is a name
    return found


@dataclass
class TrainableInt8:
    """A fake-quantized copy of a converted int8 graph, its weights and biases trainable."""

    graph: fx.GraphModule
    parameters: dict[str, nn.Parameter]  # attribute path -> the trained value


def trainable_copy(converted: fx.GraphModule) -> TrainableInt8:
    """A copy computing exactly what `converted` computes, with straight-through gradients to its weights."""
    graph = copy.deepcopy(converted)
    for quantize in _weights(graph):  # the scales training recomputes must be the ones the graph has
        held = _attribute(graph, quantize.args[1].target)
        recomputed = weight_scales(_attribute(graph, quantize.args[0].target), *quantize.args[3:6])
        if not torch.equal(held, recomputed.to(held.dtype)):
            raise ValueError(
                f"{quantize.name}: the int8 graph's weight scales are not symmetric per-channel "
                f"min-max with floor {WEIGHT_SCALE_FLOOR:g}; fine-tuning would change them"
            )
    trained = [n.args[0].target for n in _weights(graph)] + _biases(graph)
    for quantize, dequantize in _quantized_pairs(graph):
        value = quantize.args[0]
        with graph.graph.inserting_before(dequantize):
            if str(quantize.target) == _PER_CHANNEL:  # (w, scales, zero_points, axis, min, max, dtype)
                rounded = graph.graph.call_function(_rounded_weight, (value, *quantize.args[2:7]))
            else:  # quantize_per_tensor(x, scale, zero_point, min, max, dtype)
                rounded = graph.graph.call_function(
                    _rounded_activation, (value, tuple(quantize.args[1:]), tuple(dequantize.args[1:]))
                )
        dequantize.replace_all_uses_with(rounded)
    graph.graph.eliminate_dead_code()
    graph.recompile()
    parameters = {path: _as_parameter(graph, path) for path in dict.fromkeys(trained)}
    torch.nn.Module.train(graph, False)
    return TrainableInt8(graph, parameters)


def fine_tune(
    trainable: TrainableInt8,
    images: torch.Tensor,
    teacher: torch.Tensor,
    epochs: int = EPOCHS,
    learning_rate: float = LEARNING_RATE,
    batch: int = BATCH,
    seed: int = 0,
    progress: Callable[[], None] = lambda: None,
) -> list[float]:
    """Train on `images` (the graph's input) towards PyTorch's logits `teacher`; the mean loss per epoch.

    Mean squared error of the logits: the logit SQNR the rest of the project reports is its log.
    `progress` is called once a batch."""
    parameters = list(trainable.parameters.values())
    optimizer = torch.optim.Adam(parameters, lr=learning_rate)
    steps_per_epoch = max(1, len(images) // batch)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs * steps_per_epoch)
    generator = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(epochs):
        order = torch.randperm(len(images), generator=generator)
        total = 0.0
        for step in range(steps_per_epoch):
            chosen = order[step * batch : (step + 1) * batch]
            loss = torch.nn.functional.mse_loss(trainable.graph(images[chosen]), teacher[chosen])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item()
            progress()
        losses.append(total / steps_per_epoch)
    return losses


def write_back(trainable: TrainableInt8, converted: fx.GraphModule) -> None:
    """The trained weights and biases into `converted` (a converted graph of the same network, e.g. the
    batch-1 one the int8 file is made from), and its weight scales set to what the new weights give."""
    targets = {path: _attribute_or_none(converted, path) for path in trainable.parameters}
    if any(target is None or target.shape != trainable.parameters[path].shape for path, target in targets.items()):
        raise ValueError("the graph to write the trained weights into is not a graph of the trained network")
    for path, value in trainable.parameters.items():
        target = targets[path]
        with torch.no_grad():
            target.copy_(value.detach())
    for quantize in _weights(converted):
        axis, low, high = quantize.args[3:6]
        scales = weight_scales(_attribute(converted, quantize.args[0].target), axis, low, high)
        for node in (quantize, *quantize.users):
            held = node.args[1]
            if not isinstance(held, fx.Node) or held.op != "get_attr":
                raise ValueError(f"{node.name}: its scales are not a constant of the graph")
            with torch.no_grad():
                _attribute(converted, held.target).copy_(scales.to(_attribute(converted, held.target).dtype))


def logits(graph: fx.GraphModule, images: torch.Tensor, batch: int = 250) -> np.ndarray:
    with torch.no_grad():
        return torch.cat([graph(images[i : i + batch]) for i in range(0, len(images), batch)]).numpy()
