"""Per-layer cost of a model at one input size: parameters, MACs and activation memory.

MACs are multiply-accumulates of convolutions and matrix products (torch's FlopCounterMode counts two
FLOPs per MAC; we halve it), the convention torchvision's "GFLOPS" and most papers use. Elementwise
ops, norms and pooling are not counted. The model runs on the meta device: shapes only, no compute,
so profiling EfficientNet-B7 at 600x600 takes a moment, not seconds of arithmetic.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from edgecnn.zoo.spec import check_resolution


@dataclass(frozen=True)
class LayerProfile:
    name: str
    kind: str
    output_shape: tuple[int, ...]
    params: int
    macs: int
    activation_bytes: int  # the layer's output tensor at batch 1


@dataclass(frozen=True)
class Profile:
    resolution: int
    layers: tuple[LayerProfile, ...]
    params: int
    macs: int
    activation_bytes: int  # sum of every layer's output at batch 1
    peak_activation_bytes: int  # largest input + output of any single layer: a floor for the working set
    output_shape: tuple[int, ...]


def profile(model: nn.Module, resolution: int, in_channels: int = 3) -> Profile:
    """Profile `model` on one `in_channels` x `resolution` x `resolution` image (batch 1)."""
    info = getattr(model, "model_info", None)
    min_resolution = info.min_resolution if info is not None else 1
    name = info.name if info is not None else type(model).__name__
    resolution = check_resolution(resolution, min_resolution, name)

    meta_state = {k: v.to("meta") for k, v in itertools.chain(model.named_parameters(), model.named_buffers())}
    leaves = [(n, m) for n, m in model.named_modules() if not any(True for _ in m.children())]
    records: list[LayerProfile] = []
    counter = FlopCounterMode(display=False)
    flops_before: dict[int, int] = {}
    input_bytes: dict[int, int] = {}
    peak = 0

    def before(module: nn.Module, inputs: tuple) -> None:
        flops_before[id(module)] = counter.get_total_flops()
        input_bytes[id(module)] = sum(_nbytes(t) for t in inputs if isinstance(t, torch.Tensor))

    def after(layer_name: str):
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            nonlocal peak
            out_bytes = _nbytes(output)
            peak = max(peak, input_bytes[id(module)] + out_bytes)
            records.append(
                LayerProfile(
                    name=layer_name,
                    kind=type(module).__name__,
                    output_shape=tuple(output.shape),
                    params=sum(p.numel() for p in module.parameters(recurse=False)),
                    macs=(counter.get_total_flops() - flops_before[id(module)]) // 2,
                    activation_bytes=out_bytes,
                )
            )

        return hook

    handles = []
    for layer_name, module in leaves:
        handles.append(module.register_forward_pre_hook(before))
        handles.append(module.register_forward_hook(after(layer_name)))
    was_training = model.training
    model.eval()
    try:
        x = torch.empty(1, in_channels, resolution, resolution, device="meta")
        with torch.no_grad(), counter:
            out = torch.func.functional_call(model, meta_state, (x,))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()

    return Profile(
        resolution=resolution,
        layers=tuple(records),
        params=sum(p.numel() for p in model.parameters()),
        macs=counter.get_total_flops() // 2,
        activation_bytes=sum(r.activation_bytes for r in records),
        peak_activation_bytes=peak,
        output_shape=tuple(out.shape),
    )


def _nbytes(t: Optional[torch.Tensor]) -> int:
    return t.numel() * t.element_size() if isinstance(t, torch.Tensor) else 0
