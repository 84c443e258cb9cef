"""The last remedy for int8 that misses its bound: float for the layers that cost it most, chosen by measurement.

A unit is the smallest module that holds only leaf modules (a conv with its BatchNorm and activation, a
squeeze-excite, a residual basic block, a dense layer); an operator outside every such block is a unit of its
own (a residual add, a stem conv at the network's root). Leaving a unit in float means: its weights and
the values that travel between its own operators stay float, while what enters it from int8 is still the
int8 value (dequantized) and what leaves it is quantized again.

Which units: a unit left in float alone still rounds what leaves it, at the input of the int8 units that
read it, and that rounding is often most of the unit's error. So a candidate is a unit together with the
units that read its output, and its gain is measured on the PT2E graph (the int8 model simulated in PyTorch)
by making it float besides what is float already. The search is greedy, each step adding the candidate that
raises the logits' SQNR most, because gains do not add; SQNR rather than the bound's own metric, because a
top-1 metric on few images moves in steps of one image. Float rather than int16 activations, because the
converter cannot write a correct 16x8 file and XNNPACK runs no int16 operator. The measurements behind each
choice are in docs/int8.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional, cast

import numpy as np
from torch import fx, nn

from edgecnn.util import console
from edgecnn.util.interrupts import checkpoint
from edgecnn.util.metrics import logits_sqnr_db

# Beyond a quarter of the units in float the file is no longer an int8 model, nor faster than fp32
# (EfficientNet-B0 with 27 of 78 units in float ran as fast as fp32: docs/int8.md).
MAX_FLOAT_FRACTION = 0.25
SENSITIVITY_IMAGES = 256  # images each unit's gain is measured on (the bound is checked on all repair images)


def is_quantize(node: fx.Node) -> bool:
    return str(node.target) in (
        "quantized_decomposed.quantize_per_tensor.default",
        "quantized_decomposed.quantize_per_channel.default",
    )


def is_dequantize(node: fx.Node) -> bool:
    return str(node.target) in (
        "quantized_decomposed.dequantize_per_tensor.default",
        "quantized_decomposed.dequantize_per_channel.default",
    )


def leaf_blocks(model: nn.Module) -> set[str]:
    """Paths of the modules whose children are all leaf modules (and that have children)."""
    return {
        name
        for name, module in model.named_modules()
        if name
        and any(True for _ in module.children())
        and all(not any(True for _ in child.children()) for child in module.children())
    }


def module_path(node: fx.Node, prefix: str = "") -> Optional[str]:
    """The path of the innermost module whose forward computes `node`, relative to `prefix`."""
    stack = node.meta.get("nn_module_stack")
    if not stack:
        return None
    path = list(stack.values())[-1][0]
    for known in (prefix, "L['self']." + prefix):
        if known and path.startswith(known):
            return path[len(known) :]
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
    # (unit, the metric and the logits SQNR in dB with it and its readers alone in float), best first
    ranking: list[tuple[str, float, float]] = field(default_factory=list)
    total_units: int = 0
    # each greedy step: (the units in float after it, their logits SQNR in dB on the ranking images)
    steps: list[tuple[list[str], float]] = field(default_factory=list)


class FloatUnitSearch:
    """Knock units out of the PT2E graph's quantization to find which ones to leave in float.

    `graph`: the converted PT2E module (quantize/dequantize pairs still explicit, fold_quantize=False);
    `units`: for each compute node name, its unit; `simulate(graph, count) -> logits` runs it on the first
    `count` repair images; `reference`: PyTorch's logits on the repair images."""

    def __init__(
        self,
        graph: fx.GraphModule,
        units: dict[str, str],
        simulate: Callable[[fx.GraphModule, int], np.ndarray],
        reference: np.ndarray,
    ):
        self.graph = graph
        self.units = units
        self.simulate = simulate
        self.reference = reference
        self.order = _network_order(graph, units)
        self.candidates = sorted(set(units.values()), key=self.order)
        self.limit = max(1, int(len(self.candidates) * MAX_FLOAT_FRACTION))
        self._readers = self.readers()
        self._subset = min(SENSITIVITY_IMAGES, len(reference))

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
                # fx types a node's args as any Argument; a quantize node's first is the value it rounds, a node
                source = cast(fx.Node, arg.args[0].args[0])
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

    def _with(self, chosen: Iterable[str], unit: str) -> list[str]:
        return sorted(set(chosen) | {unit} | self._readers[unit], key=self.order)

    def _sqnr(self, chosen: Iterable[str]) -> tuple[np.ndarray, float]:
        checkpoint()
        logits = self.run_with_float(chosen, self._subset)
        return logits, logits_sqnr_db(logits, self.reference[: self._subset])

    def grow(self, chosen: list[str], progress_label: str) -> Optional[tuple[list[str], float]]:
        """The units in float after one greedy step from `chosen`, and their logits SQNR on the ranking
        images; None when no candidate fits within MAX_FLOAT_FRACTION of the units."""
        best = None
        options = [unit for unit in self.candidates if len(chosen) < len(self._with(chosen, unit)) <= self.limit]
        for unit in console.track(options, progress_label):
            grown = self._with(chosen, unit)
            _, db = self._sqnr(grown)
            if best is None or db > best[1]:
                best = (grown, db)
        return best

    def search(
        self, measure: Callable[[np.ndarray, int], float], met: Callable[[float], bool], progress_label: str
    ) -> FloatChoice:
        """Rank every unit with its readers alone in float (the record's ranking, and the first greedy step),
        then grow the float set one greedy step at a time until `measure` on all repair images is `met`,
        within MAX_FLOAT_FRACTION of the units. Ranked by logit SQNR, not by the bound's metric on few
        images, which ranked EfficientNet-B0's stem (the unit that matters most) 21st (docs/int8.md)."""
        all_images = len(self.reference)
        ranking = []
        for unit in console.track(self.candidates, progress_label):
            logits, db = self._sqnr(self._with([], unit))
            ranking.append((unit, measure(logits, self._subset), db))
        ranking.sort(key=lambda item: (-item[2], -item[1]))
        chosen: list[str] = []
        steps = []
        value = measure(self.run_with_float([], all_images), all_images)
        step: Optional[tuple[list[str], float]] = (self._with([], ranking[0][0]), ranking[0][2])
        while not met(value) and step is not None and len(step[0]) <= self.limit:
            chosen = step[0]
            steps.append(step)
            checkpoint()
            value = measure(self.run_with_float(chosen, all_images), all_images)
            if not met(value):
                step = self.grow(chosen, f"{progress_label}: step {len(steps) + 1}, {len(chosen)} in float")
        return FloatChoice(chosen, value, met(value), ranking, len(self.candidates), steps)


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
