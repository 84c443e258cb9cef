"""The last remedy for int8 that misses its bound: float for the layers that cost it most, chosen by measurement.

A unit is the smallest module that holds only leaf modules (a conv with its BatchNorm and activation, a
squeeze-excite, a residual basic block, a dense layer); an operator outside every such block is a unit of its
own (a residual add, a stem conv at the network's root). Leaving a unit in float means: its weights and
the values that travel between its own operators stay float, while what enters it from int8 is still the
int8 value (dequantized) and what leaves it is quantized again.

Which units: a unit left in float alone still rounds what leaves it, at the input of the int8 units that
read it, and that rounding is often most of the unit's error. So the candidates are a unit together with
the units that read its output, and each candidate's gain is measured on the PT2E graph (the int8 model
simulated in PyTorch, weights and activations rounded as LiteRT will) by making it float and nothing
else. Candidates are then added in order of gain until the simulated model meets the bound. The gain is
the bound's own metric on the ranking's images, ties broken by the SQNR of the logits against PyTorch's:
on those few images top-1 agreement is a count that most candidates leave unchanged. Measured on
EfficientNet-B0 (alpha 0.25, 32 px, Fashion-MNIST, 3,000 test images): with every other rounding
removed, the stem's output alone costs 8 dB of logit SQNR (37.3 -> 29.3), its own weights and inner values
under 1 dB; the stem alone in float reached top-1 agreement 98.37% (from 98.30%), the stem with its reader
99.10%. On MobileNetV3-small (alpha 0.5, 32 px) the stem alone in float took agreement from 96.7% to 99.0%
on 300 test images.

Why float and not int16 activations (TFLite's 16x8): measured with litert-torch 0.10 on this machine, its
converter folds the int8 -> int16 requantization into neighbouring operators (kernels then refuse mixed
int8/int16 inputs and outputs), writes int32 biases that 16x8 CONV_2D and FULLY_CONNECTED accept but compute
wrongly (worst cosine 0.904 against 0.999999 computed by hand from the same file), and cannot give an
int16 first layer behind an int8 input. Working around that means editing the flatbuffer after conversion;
XNNPACK runs no int16 operator either, so those layers would fall to reference kernels. Float layers are
delegated to XNNPACK like the rest.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional

import numpy as np
from torch import fx, nn

from edgecnn.util import console
from edgecnn.util.interrupts import checkpoint

MAX_FLOAT_FRACTION = 0.25  # beyond a quarter of the units in float, the model is no longer an int8 model
SENSITIVITY_IMAGES = 256  # images each unit's gain is measured on (the bound is checked on all repair images)



def is_quantize(node: fx.Node) -> bool:
    return str(node.target) in ("quantized_decomposed.quantize_per_tensor.default",
                                "quantized_decomposed.quantize_per_channel.default")


def is_dequantize(node: fx.Node) -> bool:
    return str(node.target) in ("quantized_decomposed.dequantize_per_tensor.default",
                                "quantized_decomposed.dequantize_per_channel.default")


def leaf_blocks(model: nn.Module) -> set[str]:
    """Paths of the modules whose children are all leaf modules (and that have children)."""
    return {name for name, module in model.named_modules()
            if name and any(True for _ in module.children())
            and all(not any(True for _ in child.children()) for child in module.children())}


def module_path(node: fx.Node, prefix: str = "") -> Optional[str]:
    """The path of the innermost module whose forward computes `node`, relative to `prefix`."""
    stack = node.meta.get("nn_module_stack")
    if not stack:
        return None
    path = list(stack.values())[-1][0]
    for known in (prefix, "L['self']." + prefix):
        if known and path.startswith(known):
            return path[len(known):]
    return path


def unit_of(path: Optional[str], blocks: set[str]) -> Optional[str]:
    """The leaf block that contains `path`, or `path` itself when none does."""
    if path is None:
        return None
    parts = path.split(".")
    for depth in range(1, len(parts) + 1):
        prefix = ".".join(parts[:depth])
        if prefix in blocks:
            return prefix
    return path or None


@dataclass
class FloatChoice:
    """What the search found: the units to leave in float, and the bound's metric measured along the way."""

    units: list[str]
    simulated: float  # the metric of the simulated model with `units` in float
    met: bool
    # (unit, the metric and the logits SQNR in dB with it alone in float), best first
    ranking: list[tuple[str, float, float]] = field(default_factory=list)
    total_units: int = 0
    # the candidates in ranking order: each ranked unit with the units that read it (what went float)
    ranked_sets: list[list[str]] = field(default_factory=list)


class FloatUnitSearch:
    """Knock units out of the PT2E graph's quantization to find which ones to leave in float.

    `graph`: the converted PT2E module (quantize/dequantize pairs still explicit, fold_quantize=False);
    `units`: for each compute node name, its unit; `simulate(graph) -> logits` runs it on the repair images.
    """

    def __init__(self, graph: fx.GraphModule, units: dict[str, str], simulate: Callable[[fx.GraphModule, int], np.ndarray]):
        self.graph = graph
        self.units = units
        self.simulate = simulate

    def _float_edges(self, chosen: Iterable[str]) -> list[tuple[fx.Node, fx.Node, fx.Node]]:
        """(consumer, dequantize node, float source) for each rounded value a float unit would not round:
        its weights, and values passed between its own operators."""
        chosen = set(chosen)
        edges = []
        for node in self.graph.graph.nodes:
            if self.units.get(node.name) not in chosen:
                continue
            for arg in node.all_input_nodes:
                if not is_dequantize(arg) or not isinstance(arg.args[0], fx.Node) or not is_quantize(arg.args[0]):
                    continue
                source = arg.args[0].args[0]
                if source.op == "get_attr" or self.units.get(source.name) in chosen:
                    edges.append((node, arg, source))
        return edges

    def run_with_float(self, chosen: Iterable[str], count: int) -> np.ndarray:
        edges = self._float_edges(chosen)
        for consumer, dq, source in edges:
            consumer.replace_input_with(dq, source)
        self.graph.recompile()
        try:
            return self.simulate(self.graph, count)
        finally:
            for consumer, dq, source in edges:
                consumer.replace_input_with(source, dq)
            self.graph.recompile()

    def readers(self) -> dict[str, set[str]]:
        """unit -> the units that read a value it computes (through a quantize/dequantize pair)."""
        reading: dict[str, set[str]] = {unit: set() for unit in self.units.values()}
        for node in self.graph.graph.nodes:
            consumer = self.units.get(node.name)
            if consumer is None:
                continue
            for arg in node.all_input_nodes:
                if is_dequantize(arg) and isinstance(arg.args[0], fx.Node) and is_quantize(arg.args[0]):
                    producer = self.units.get(arg.args[0].args[0].name)
                    if producer is not None and producer != consumer:
                        reading[producer].add(consumer)
        return reading

    def search(self, measure: Callable[[np.ndarray, int], float], met: Callable[[float], bool],
               reference: np.ndarray, progress_label: str) -> FloatChoice:
        """Rank every unit, with its readers, by the logits' SQNR against `reference` (PyTorch's logits on the
        repair images) with them alone in float, on a subset; then add them best first until `measure` on
        all images is `met`, within MAX_FLOAT_FRACTION of the units.

        The ranking is by SQNR, not by the bound's own metric: a top-1 metric on the subset moves in steps
        of one image, so the ranking was one of noise. Measured on EfficientNet-B0 (alpha 0.25, Fashion-MNIST):
        its stem in float is 1.8 dB ahead of any other unit and takes agreement from 98.34% to 99.12% on
        5,000 test images, yet 20 units ranked above it by agreement on 256 images, and the 18 units the
        search then chose reached 98.48%."""
        all_images = len(reference)
        order = _network_order(self.graph, self.units)
        candidates = sorted(set(self.units.values()), key=order)
        readers = self.readers()
        subset = min(SENSITIVITY_IMAGES, all_images)
        ranking = []
        for unit in console.track(candidates, progress_label):
            checkpoint()
            logits = self.run_with_float({unit} | readers[unit], subset)
            ranking.append((unit, measure(logits, subset), logits_sqnr_db(logits, reference[:subset])))
        ranking.sort(key=lambda item: (-item[2], -item[1]))
        ranked_sets = [sorted({unit} | readers[unit], key=order) for unit, *_ in ranking]
        limit = max(1, int(len(candidates) * MAX_FLOAT_FRACTION))
        chosen: list[str] = []
        value = measure(self.run_with_float([], all_images), all_images)
        for candidate in ranked_sets:
            if met(value):
                break
            grown = sorted(set(chosen) | set(candidate), key=order)
            if len(grown) > limit:
                break
            if len(grown) == len(chosen):
                continue
            checkpoint()
            chosen = grown
            value = measure(self.run_with_float(chosen, all_images), all_images)
        return FloatChoice(chosen, value, met(value), ranking, len(candidates), ranked_sets)


def logits_sqnr_db(logits: np.ndarray, reference: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio of `logits` against `reference`, in dB, over all images."""
    noise = float(np.sum((logits - reference) ** 2))
    return float("inf") if noise == 0 else 10 * float(np.log10(float(np.sum(reference ** 2)) / noise))


def _network_order(graph: fx.GraphModule, units: dict[str, str]):
    first: dict[str, int] = {}
    for i, node in enumerate(graph.graph.nodes):
        unit = units.get(node.name)
        if unit is not None:
            first.setdefault(unit, i)
    return lambda unit: first.get(unit, 0)


def compute_units(graph: fx.GraphModule, blocks: set[str], prefix: str) -> dict[str, str]:
    """Compute node name -> unit, for the nodes of `graph` that a module of the network computes."""
    units = {}
    for node in graph.graph.nodes:
        if node.op != "call_function" or is_quantize(node) or is_dequantize(node):
            continue
        unit = unit_of(module_path(node, prefix), blocks)
        if unit is not None:
            units[node.name] = unit
    return units
