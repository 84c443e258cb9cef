"""The int8 engine: one way from a network to an int8 file held to a bound, whatever format writes the file.

A format supplies an `Int8Writer`: how it quantizes a network with PT2E (its quantizer, its graph wrapper),
how it writes a quantized graph as a file and checks it is pure int8, and how its own runtime runs the file.
Everything else is here and the same for every int8 file: the bound, the repair images it is measured on,
and the remedies, cheapest first, each kept only where the runtime's run of the file measures better:

1. cross-layer equalisation, concat range equalisation and bias correction on a copy of the network
   (`remedies`): bias correction took trained EfficientNet-Lite0 from worst cosine 0.971 to 0.994;
2. if the bound is still missed and the weights come with a dataset, the weights fine-tuned to PyTorch's
   logits through the int8 graph's own rounding (`finetune`), on images neither calibration nor the repair
   measurement uses: the file stays pure int8;
3. if a bound the user stated is still missed, float for the units that cost it most (`float_units`), in a
   second file, never in place of the pure int8 one. It is made from the network without fine-tuning: the
   float units' neighbours are calibrated anew.

The repair record lists every candidate, what was kept and the final measurement.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Generic, Iterable, Optional, Protocol, TypeVar

import numpy as np
import torch

from edgecnn.data.preprocess import Int8InputEncoding
from edgecnn.int8.request import Int8Network, Int8Request
from edgecnn.schema.int8 import (
    SEARCH_MET,
    FineTuning,
    FloatUnitSearchRecord,
    FloatUnitsTry,
    GreedyStep,
    Int8Repair,
    Int8Target,
    Measured,
    RepairCandidate,
    RepairOutcome,
    SensitiveUnit,
)
from edgecnn.util import console
from edgecnn.util.errors import ExportError
from edgecnn.util.interrupts import checkpoint


@dataclass
class QuantizedGraph:
    """A PT2E-converted int8 graph (the int8 model simulated in PyTorch), before a format writes it."""

    graph: torch.fx.GraphModule
    quantizer: object
    sample: torch.Tensor  # the example input the graph was exported with (the format's layout)
    network: torch.nn.Module  # the rewritten network it was exported from (module paths as in the backbone)
    encoding: Int8InputEncoding
    unit_prefix: str = ""  # what the graph's module paths carry before the network's own (a wrapper's name)
    channels_last: bool = False  # the graph takes NHWC images (else NCHW)

    def inputs(self, images: np.ndarray) -> torch.Tensor:
        """uint8 NHWC `images` as the graph takes them: int8-encoded, decoded, in the graph's layout."""
        normalized = torch.from_numpy(self.encoding.decode(self.encoding.encode(images)))
        return normalized if self.channels_last else normalized.permute(0, 3, 1, 2).contiguous()


Made = TypeVar("Made")  # what a writer returns for a file it wrote (a format's Artifact; has `.path`)


class Int8Writer(Protocol[Made]):
    """What a format gives the engine. Files are written inside `work_dir`, named by the writer."""

    @property
    def label(self) -> str: ...  # the format's name in progress lines, e.g. "tflite"

    @property
    def work_dir(self) -> Path: ...

    @property
    def int8_file(self) -> str: ...

    @property
    def candidate_file(self) -> str: ...  # a remade file while it is measured

    @property
    def before_repair_file(self) -> Optional[str]: ...  # the file as first made, once a remedy replaces it

    @property
    def mixed(self) -> Optional["MixedWriter[Made]"]: ...  # None: the format writes no file with float units

    def quantize(
        self, backbone: torch.nn.Module, float_units: Iterable[str] = (), any_batch: bool = False
    ) -> QuantizedGraph:
        """PT2E with the format's quantizer, calibrated on the network's calibration images; `float_units`
        left unquantized. `any_batch`: a graph taking any batch size, for simulation only."""
        ...

    def write(self, quantized: QuantizedGraph, file: str) -> Made:
        """Write the pure int8 file, or raise ExportError saying why it is not one."""
        ...

    def logits(self, made: Made, images: np.ndarray) -> np.ndarray:
        """The format's own runtime's dequantized logits of a written file on uint8 NHWC images."""
        ...

    def path_of(self, made: Made) -> str: ...

    def renamed(self, made: Made, file: str) -> Made: ...

    def with_repair(self, made: Made, repair: Int8Repair) -> Made: ...


class MixedWriter(Protocol[Made]):
    @property
    def file(self) -> str: ...

    def write(self, quantized: QuantizedGraph, float_units: list[str]) -> Made: ...

    def recorded(self, made: Made, repair: Int8Repair, target: str, measured: Measured) -> Made: ...


@dataclass
class RepairMeasure:
    """The bound's metric of a candidate int8 file, on the repair images, against PyTorch's logits."""

    network: Int8Network
    request: Int8Request
    run: Callable[[np.ndarray], np.ndarray] = dataclasses.field(repr=False, default=lambda images: images)

    def __post_init__(self) -> None:
        if self.request.target is None or self.request.repair_images is None:
            raise ValueError("an int8 bound is measured on repair images: this request has no bound or no images")
        self.target: Int8Target = self.request.target
        self.images: np.ndarray = self.request.repair_images
        with torch.no_grad():
            images = torch.from_numpy(self.images).permute(0, 3, 1, 2).float()
            self.reference = np.concatenate(
                [self.network.model(images[i : i + 64]).numpy() for i in range(0, len(images), 64)]
            ).astype(np.float64)

    def of_logits(self, logits: np.ndarray, count: Optional[int] = None) -> float:
        count = len(logits) if count is None else count
        labels = self.request.repair_labels
        return self.target.measure(logits[:count], self.reference[:count], None if labels is None else labels[:count])

    def record(self, value: float) -> Measured:
        """`value` of the bound's metric, as the repair record keeps it."""
        return Measured(self.target.metric, round(value, 6))


@dataclass
class Int8Made(Generic[Made]):
    int8: Made  # the pure int8 file, its repair recorded
    mixed: Optional[Made] = None  # the file with float units, where the last remedy made one


class _Candidates(Generic[Made]):
    """The file kept so far and its value, replaced by a candidate that measures better."""

    def __init__(self, writer: Int8Writer[Made], made: Made, measure: RepairMeasure) -> None:
        self.writer, self.measure = writer, measure
        self.kept, self.value = made, self.of(made)

    def of(self, made: Made) -> float:
        return self.measure.of_logits(self.writer.logits(made, self.measure.images))

    def offer(self, candidate: Made, value: float) -> bool:
        """Keep `candidate` (written as the candidate file) in place of the int8 file if it measures better."""
        w = self.writer
        work = w.work_dir
        if value <= self.value:
            (work / w.path_of(candidate)).unlink(missing_ok=True)
            return False
        if w.before_repair_file is not None and not (work / w.before_repair_file).exists():
            os.replace(work / w.int8_file, work / w.before_repair_file)  # for the per-layer before/after
        os.replace(work / w.path_of(candidate), work / w.int8_file)
        self.kept, self.value = w.renamed(candidate, w.int8_file), value
        return True


def make_int8(writer: Int8Writer[Made], network: Int8Network, request: Int8Request) -> Int8Made[Made]:
    """The int8 file, and where it has a bound to meet and repair is "auto", the remedies of this module's
    docstring, in order. Raises ExportError where the plain int8 file cannot be made pure int8."""
    from edgecnn.int8.remedies import apply_remedies

    quantized = writer.quantize(network.backbone)
    made = writer.write(quantized, writer.int8_file)
    repair = Int8Repair(request.mode, str(request.target) if request.target else None, measured_on=request.measured_on)
    if not request.repairs:
        return Int8Made(writer.with_repair(made, repair))
    measure = RepairMeasure(network, request)
    target = measure.target
    files = _Candidates(writer, made, measure)
    repair.candidates.append(RepairCandidate([], measure.record(files.value)))
    corrected, remedies = apply_remedies(network.backbone, network.calibration, network.mean, network.std)
    with console.step(f"{writer.label} int8 ({target.metric} {files.value:.4f}) remade with {', '.join(remedies)}"):
        candidate_graph = writer.quantize(corrected)
        candidate = writer.write(candidate_graph, writer.candidate_file)
        value = files.of(candidate)
    repair.candidates.append(RepairCandidate(remedies, measure.record(value)))
    backbone = network.backbone
    if files.offer(candidate, value):
        repair.applied, backbone, quantized = remedies, corrected, candidate_graph
    if not target.met(files.value):
        tuned = _fine_tuned(writer, network, request, backbone, quantized, files, repair)
        if tuned is not None and files.offer(*tuned):
            assert repair.fine_tuning is not None  # recorded by _fine_tuned
            repair.fine_tuning.kept = True
    repair.final = RepairOutcome(measure.record(files.value), target.met(files.value))
    result = Int8Made(writer.with_repair(files.kept, repair))
    if not target.met(files.value) and request.target_stated and writer.mixed is not None:
        result.mixed = _float_units_to_target(writer, writer.mixed, backbone, quantized, files, repair)
    return result


def _fine_tuned(
    writer: Int8Writer[Made],
    network: Int8Network,
    request: Int8Request,
    backbone: torch.nn.Module,
    quantized: QuantizedGraph,
    files: _Candidates[Made],
    repair: Int8Repair,
) -> Optional[tuple[Made, float]]:
    """The int8 file remade from `quantized` with its weights fine-tuned to PyTorch's logits (`finetune`),
    written as the candidate file and measured; None where there are no images to train on. Recorded in
    `repair.fine_tuning`."""
    from edgecnn.int8 import finetune

    if request.tuning is None:
        repair.fine_tuning = FineTuning(
            tried=False,
            why_not="it needs images beyond calibration's and the repair set's: weights that come with a dataset",
        )
        return None
    images, source = request.tuning.load()
    with torch.no_grad():
        raw = torch.from_numpy(images).permute(0, 3, 1, 2).float()
        teacher = torch.cat([network.model(raw[i : i + 250]) for i in range(0, len(raw), 250)])
    inputs = quantized.inputs(images)
    try:
        trainable = finetune.trainable_copy(writer.quantize(backbone, any_batch=True).graph)
    except ValueError as err:  # a quantizer whose weight scales fine-tuning cannot keep: said, not tried
        repair.fine_tuning = FineTuning(tried=False, why_not=str(err))
        return None
    steps = finetune.EPOCHS * max(1, len(inputs) // finetune.BATCH)
    label = f"{writer.label} int8: weights fine-tuned to PyTorch's logits on {len(inputs)} images"
    with console.step(label, total=steps) as advance:

        def progress() -> None:
            checkpoint()
            advance()

        losses = finetune.fine_tune(trainable, inputs, teacher, progress=progress)
    tuned = dataclasses.replace(quantized, graph=copy.deepcopy(quantized.graph))
    finetune.write_back(trainable, tuned.graph)
    candidate = writer.write(tuned, writer.candidate_file)
    value = files.of(candidate)
    repair.fine_tuning = FineTuning(
        tried=True,
        images=source,
        epochs=finetune.EPOCHS,
        learning_rate=finetune.LEARNING_RATE,
        loss="mean squared error to PyTorch's logits",
        loss_per_epoch=[round(x, 6) for x in losses],
        measured=files.measure.record(value),
    )
    repair.candidates.append(RepairCandidate([*repair.applied, "int8-aware fine-tuning"], files.measure.record(value)))
    return candidate, value


# greedy steps (each a unit with its readers) taken beyond what the search's simulation needed, when the
# runtime's own run of the file misses the bound (simulation and LiteRT differ by about 0.4 pt of agreement)
EXTRA_FLOAT_STEPS = 3
SEARCH_BATCH = 64  # images per simulated forward in the float-unit search
MIXED = "int8-mixed"


def _float_units_to_target(
    writer: Int8Writer[Made],
    mixed: MixedWriter[Made],
    backbone: torch.nn.Module,
    quantized: QuantizedGraph,
    files: _Candidates[Made],
    repair: Int8Repair,
) -> Optional[Made]:
    """The last remedy: a file with float for the fewest units that meet the bound, kept only if the
    runtime's run of it meets the bound too. Records the search in `repair`.

    Units, each with the units that read it, are knocked out of the graph's quantization one greedy step at
    a time (the one that raises the logits' SQNR most) until the simulation meets the bound; the choice is
    confirmed by quantizing afresh with those units in float (their neighbours' ranges are calibrated anew),
    taking a few more steps while that, or the runtime's run of the file, still misses."""
    from edgecnn.int8.float_units import FloatUnitSearch, compute_units, leaf_blocks

    measure = files.measure
    target = measure.target
    normalized = quantized.inputs(measure.images)

    def simulate(graph: torch.fx.GraphModule, count: int) -> np.ndarray:
        with torch.no_grad():
            return np.concatenate(
                [graph(normalized[i : min(i + SEARCH_BATCH, count)]).numpy() for i in range(0, count, SEARCH_BATCH)]
            ).astype(np.float64)

    # The search runs thousands of simulated images; per image, the fake-quantized graph's time is
    # mostly per-operator overhead, so it runs them 64 at a time on a graph that takes any batch
    # (measured: DenseNet-121's 73 units took 1,424 s at batch 1, on a loaded machine).
    searchable = writer.quantize(backbone, any_batch=True)
    units = compute_units(searchable.graph, leaf_blocks(searchable.network), searchable.unit_prefix)
    search = FloatUnitSearch(searchable.graph, units, simulate, measure.reference)
    label = f"{writer.label} int8 misses {target}: units tried in float"
    choice = search.search(measure.of_logits, target.met, label)
    found = FloatUnitSearchRecord(
        units_tried=choice.total_units,
        most_sensitive=[SensitiveUnit(u, measure.record(v), round(db, 2)) for u, v, db in choice.ranking[:5]],
        greedy_steps=[GreedyStep(len(floated), round(db, 2)) for floated, db in choice.steps],
    )
    repair.float_units = found
    chosen = list(choice.units)

    def give_up(outcome: str) -> None:
        found.outcome = outcome
        console.say(f"[edgecnn] {writer.label} {MIXED} ({mixed.file}) not made: {outcome}")

    if not choice.met:  # no rebuild can be expected to do better than the search's own simulation
        give_up(
            f"float for the {len(chosen)} units that matter most (of {choice.total_units}, the most allowed) "
            f"reaches {target.metric} {choice.simulated:.4f} in simulation, short of {target.value:g}"
        )
        return None
    extra_steps = EXTRA_FLOAT_STEPS
    while True:
        checkpoint()
        with console.step(f"{writer.label} {MIXED}: float for {', '.join(chosen)}, quantized afresh"):
            simulated = measure.of_logits(
                simulate(writer.quantize(backbone, chosen, any_batch=True).graph, len(normalized))
            )
        value = None
        if target.met(simulated):  # the runtime's integer arithmetic rounds a little differently: it decides
            try:
                with console.step(f"{writer.label} {MIXED}: written with float for {', '.join(chosen)}"):
                    made = mixed.write(writer.quantize(backbone, chosen), chosen)
                    value = round(files.of(made), 6)
            except ExportError as err:  # the pure int8 file stands; the failure is recorded with the search
                (writer.work_dir / mixed.file).unlink(missing_ok=True)
                found.tried.append(FloatUnitsTry(list(chosen), round(simulated, 6)))
                give_up(str(err))
                return None
        found.tried.append(FloatUnitsTry(list(chosen), round(simulated, 6), value))
        if value is not None:
            if target.met(value):
                break
            (writer.work_dir / mixed.file).unlink()
        step = search.grow(chosen, f"{label}: one more step") if extra_steps else None
        extra_steps -= 1
        if step is None:
            reached = f"{value:.4f} in its runtime" if value is not None else f"{simulated:.4f} in simulation"
            give_up(f"float for {', '.join(chosen)} reaches {target.metric} {reached}, short of {target.value:g}")
            return None
        chosen = step[0]
    found.float_units, found.measured, found.outcome = list(chosen), value, SEARCH_MET
    return mixed.recorded(made, repair, str(target), measure.record(value))
