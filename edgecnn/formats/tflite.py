"""TFLite through litert-torch: a float32 model and a full-integer int8 model, both NHWC.

int8: the network without its normalisation -> torch.export (strict, batch 1) -> PT2E with symmetric
per-channel weights and static activations, calibrated on the calibration images, the input on the fixed
grid of `Int8InputEncoding` (apps normalise and quantize with one table lookup per pixel) -> LiteRT.
The result must be int8 end to end: int8 input and output, no float tensor on any operator and no
QUANTIZE/DEQUANTIZE; anything else fails the export. The number of pieces XNNPACK splits each graph into
is recorded: a fragmented graph is slow even when it is all int8.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import io
import os
from collections import Counter
from pathlib import Path
from typing import Iterable, Optional, Union

import numpy as np
import torch

from edgecnn.data.preprocess import Int8InputEncoding
from edgecnn.formats import FORMATS, litert
from edgecnn.formats.base import Artifact, ExportJob, file_contract, image_input, int8_image_input, logits_output
from edgecnn.formats.graph_passes import int8_forms
from edgecnn.formats.int8_repair import RepairMeasure
from edgecnn.formats.pt2e_rules import edge_quantizer
from edgecnn.formats.rewrites import for_xnnpack
from edgecnn.schema.artifacts import ArtifactRecord, Quantization, Refusal
from edgecnn.schema.contract import CONTRACT_KEY
from edgecnn.schema.details import INT8_ACTIVATIONS, INT8_WEIGHTS, TFLiteDetails, TFLiteGraph
from edgecnn.schema.enums import FormatName, Precision, RepairMode
from edgecnn.schema.int8 import (
    SEARCH_MET,
    FineTuning,
    FloatUnitSearchRecord,
    FloatUnitsTry,
    GreedyStep,
    Int8Repair,
    RepairCandidate,
    RepairOutcome,
    SensitiveUnit,
)
from edgecnn.util import console
from edgecnn.util.errors import ExportError
from edgecnn.util.interrupts import checkpoint

FP32_FILE = FORMATS[FormatName.TFLITE].file(Precision.FP32)
INT8_FILE = FORMATS[FormatName.TFLITE].file(Precision.INT8)


def _quiet():
    # litert-torch prints a progress tree per stage; keep the console to our own progress lines.
    return contextlib.redirect_stdout(io.StringIO())


@contextlib.contextmanager
def _converter_errors(precision: str):
    """The LiteRT converter reports a graph it cannot lower as a ValueError with MLIR diagnostics: one
    line of it, as an export failure (DenseNet-121's int8 graph was one, before its concatenations shared
    one scale)."""
    try:
        yield
    except ValueError as err:
        lines = [line.strip() for line in str(err).splitlines() if "error:" in line] or [str(err).strip()]
        detail = lines[0].split("error:", 1)[-1].strip()
        raise ExportError(f"the LiteRT converter cannot build the {precision} TFLite model: {detail[:300]}") from None


def export(job: ExportJob) -> list[Union[Artifact, Refusal]]:
    """The float model, then the int8 one. An int8 graph the converter cannot build, or one that is not
    pure int8, is refused on its own: the float model is still written."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # the converter's C++ info lines
    written: list[Union[Artifact, Refusal]] = [export_fp32(job)]
    try:
        written += export_int8_to_target(job)
    except ExportError as err:
        for name in (
            INT8_FILE,
            REPAIR_CANDIDATE,
            BEFORE_REPAIR,
            MIXED_FILE,
            _STRICT_FILE,
        ):  # a refused graph is not left as if it were one
            (job.work_dir / name).unlink(missing_ok=True)
        written.append(Refusal(FormatName.TFLITE, Precision.INT8, INT8_FILE, str(err)))
    for artifact in written:  # each file says what it takes and means, once it has left the folder
        if isinstance(artifact, Artifact):
            contract = file_contract(job, artifact.precision, artifact.input, artifact.output)
            litert.write_metadata(job.work_dir / artifact.path, CONTRACT_KEY, contract.encode())
    return written


def export_fp32(job: ExportJob) -> Artifact:
    import litert_torch

    sample = (torch.from_numpy(job.calibration[:1]).float(),)
    model = litert_torch.to_channel_last_io(
        for_xnnpack(job.model, sample[0].permute(0, 3, 1, 2), int8=False), args=[0]
    ).eval()
    with console.step("tflite fp32: converted"), _quiet(), _converter_errors("fp32"):
        litert_torch.convert(model, sample).export(str(job.work_dir / FP32_FILE))
    graph = inspect_graph(job.work_dir / FP32_FILE)
    return Artifact(
        FormatName.TFLITE,
        Precision.FP32,
        FP32_FILE,
        image_input("image", _shape(job), "NHWC"),
        logits_output("logits", [1, job.num_classes]),
        _graph_details(graph),
    )


def _shape(job: ExportJob) -> list[int]:
    return [1, job.resolution, job.resolution, 3]


REPAIR_CANDIDATE = ".model_int8_repaired.tflite"
BEFORE_REPAIR = ".model_int8_before_repair.tflite"  # read by the validation's before/after, then removed
MIXED_FILE = FORMATS[FormatName.TFLITE].file(Precision.INT8_MIXED)
# greedy steps (each a unit with its readers) taken beyond what the search's simulation needed, when LiteRT's
# own run of the file misses the bound (simulation and LiteRT differ by about 0.4 pt of agreement)
EXTRA_FLOAT_STEPS = 3
SEARCH_BATCH = 64  # images per simulated forward in the float-unit search
MIXED_PRECISION = Precision.INT8_MIXED
_STRICT_FILE = ".model_int8_mixed_float_io.tflite"


def litert_logits(
    path: Path, images: np.ndarray, encoding: Int8InputEncoding, reference_kernels: bool = False
) -> np.ndarray:
    """Dequantized logits of an int8-input TFLite file on uint8 NHWC `images`, one at a time, run as a phone
    runs it (XNNPACK) or, with `reference_kernels`, by LiteRT's built-in kernels alone."""
    interpreter = litert.interpreter(path, threads=1, reference_kernels=reference_kernels)
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    scale, zero_point = out["quantization"]
    logits = []
    for image in images:
        interpreter.set_tensor(inp["index"], encoding.encode(image[None]))
        interpreter.invoke()
        logits.append((interpreter.get_tensor(out["index"])[0].astype(np.float64) - zero_point) * scale)
    return np.stack(logits)


def _measure(job: ExportJob) -> "RepairMeasure":
    encoding = Int8InputEncoding.for_normalization(job.mean, job.std)
    return RepairMeasure(job, lambda path, images: litert_logits(path, images, encoding))


def export_int8_to_target(job: ExportJob) -> list[Artifact]:
    """The int8 model, and where it has a bound to meet (`job.int8_target`) and repair is "auto", the
    remedies, cheapest first, each kept only where it measures better on the job's repair images:

    1. cross-layer equalisation and bias correction on a copy of the network (`int8_repair`): bias
       correction took trained EfficientNet-Lite0 from worst cosine 0.971 to 0.994, and its int8 top-1
       from PyTorch's on 17 of the 19 bundled photos to all 19;
    2. if the bound is still missed and the weights come with a dataset, the weights fine-tuned to
       PyTorch's logits through the int8 graph's own rounding (`int8_finetune`), on images neither
       calibration nor the repair measurement uses: the file stays pure int8;
    3. if a bound the user stated (--int8-target) is still missed, float for the units that cost it most
       (`int8_mixed`), in a second file, `model_int8_mixed.tflite`, never in place of the pure int8 one.
       It is made from the network without fine-tuning: the float units' neighbours are calibrated anew.

    The int8 artifact's details record every candidate, what was kept and the final measurement."""
    from edgecnn.formats.int8_repair import apply_remedies

    artifact, quantized = export_int8(job)
    target = job.int8_target
    repair = Int8Repair(job.int8_repair, str(target) if target else None, measured_on=_repair_set_description(job))
    if job.int8_repair == RepairMode.NONE or target is None:
        return [_with_repair(artifact, repair)]
    measure = _measure(job)
    plain = measure.of_file(job.work_dir / INT8_FILE)
    repair.candidates.append(RepairCandidate([], measure.record(plain)))
    corrected, remedies = apply_remedies(job.backbone, job.calibration, job.mean, job.std)
    with console.step(f"tflite int8 ({target.metric} {plain:.4f}) remade with {', '.join(remedies)}"):
        candidate, candidate_graph = export_int8(job, corrected, REPAIR_CANDIDATE)
        repaired = measure.of_file(job.work_dir / REPAIR_CANDIDATE)
    repair.candidates.append(RepairCandidate(remedies, measure.record(repaired)))
    backbone, value = job.backbone, plain
    if repaired > plain:
        os.replace(job.work_dir / INT8_FILE, job.work_dir / BEFORE_REPAIR)  # for the per-layer before/after
        os.replace(job.work_dir / REPAIR_CANDIDATE, job.work_dir / INT8_FILE)
        artifact = dataclasses.replace(candidate, path=INT8_FILE)
        repair.applied = remedies
        backbone, quantized, value = corrected, candidate_graph, repaired
    else:
        (job.work_dir / REPAIR_CANDIDATE).unlink()
    if not target.met(value):
        tuned = _fine_tuned(job, backbone, quantized, measure, repair)
        if tuned is not None and tuned[2] > value:
            if not (job.work_dir / BEFORE_REPAIR).exists():
                os.replace(job.work_dir / INT8_FILE, job.work_dir / BEFORE_REPAIR)
            os.replace(job.work_dir / REPAIR_CANDIDATE, job.work_dir / INT8_FILE)
            artifact, value = dataclasses.replace(tuned[0], path=INT8_FILE), tuned[2]
            assert repair.fine_tuning is not None  # recorded by _fine_tuned
            repair.fine_tuning.kept = True
        else:
            (job.work_dir / REPAIR_CANDIDATE).unlink(missing_ok=True)
    repair.final = RepairOutcome(measure.record(value), target.met(value))
    written = [_with_repair(artifact, repair)]
    if not target.met(value) and job.int8_target_stated:
        mixed = _float_units_to_target(job, backbone, quantized, measure, repair)
        written += [mixed] if mixed is not None else []
    return written


def _fine_tuned(
    job: ExportJob, backbone: torch.nn.Module, quantized: QuantizedGraph, measure: "RepairMeasure", repair: Int8Repair
) -> Optional[tuple[Artifact, QuantizedGraph, float]]:
    """The int8 file remade from `quantized` with its weights fine-tuned to PyTorch's logits
    (`int8_finetune`), written as the repair candidate and measured; None where there are no images to
    train on. Recorded in `repair.fine_tuning`."""
    from edgecnn.formats import int8_finetune as finetune

    if job.tuning is None:
        repair.fine_tuning = FineTuning(
            tried=False,
            why_not="it needs images beyond calibration's and the repair set's: weights that come with a dataset",
        )
        return None
    images, source = job.tuning.load()
    with torch.no_grad():
        raw = torch.from_numpy(images).permute(0, 3, 1, 2).float()
        teacher = torch.cat([job.model(raw[i : i + 250]) for i in range(0, len(raw), 250)])
    inputs = torch.from_numpy(quantized.encoding.decode(quantized.encoding.encode(images)))
    trainable = finetune.trainable_copy(quantize(job, backbone, any_batch=True).graph)
    steps = finetune.EPOCHS * max(1, len(inputs) // finetune.BATCH)
    with console.step(
        f"tflite int8: weights fine-tuned to PyTorch's logits on {len(inputs)} images", total=steps
    ) as advance:

        def progress() -> None:
            checkpoint()
            advance()

        losses = finetune.fine_tune(trainable, inputs, teacher, progress=progress)
    tuned = dataclasses.replace(quantized, graph=copy.deepcopy(quantized.graph))
    finetune.write_back(trainable, tuned.graph)
    artifact = _written_int8(job, tuned, REPAIR_CANDIDATE)
    value = measure.of_file(job.work_dir / REPAIR_CANDIDATE)
    repair.fine_tuning = FineTuning(
        tried=True,
        images=source,
        epochs=finetune.EPOCHS,
        learning_rate=finetune.LEARNING_RATE,
        loss="mean squared error to PyTorch's logits",
        loss_per_epoch=[round(x, 6) for x in losses],
        measured=measure.record(value),
    )
    repair.candidates.append(RepairCandidate([*repair.applied, "int8-aware fine-tuning"], measure.record(value)))
    return artifact, tuned, value


def _repair_set_description(job: ExportJob) -> Optional[str]:
    if job.repair_images is None:
        return None
    labelled = "labelled " if job.repair_labels is not None else ""
    return f"{len(job.repair_images)} {labelled}{job.repair_source}"


def _float_units_to_target(
    job: ExportJob, backbone: torch.nn.Module, quantized: "QuantizedGraph", measure: "RepairMeasure", repair: Int8Repair
) -> Optional[Artifact]:
    """The last remedy: `model_int8_mixed.tflite`, with float for the fewest units that meet the bound,
    kept only if LiteRT's run of it meets the bound too. Records the search in `repair`.

    Units, each with the units that read it, are knocked out of the graph's quantization one greedy step at
    a time (the one that raises the logits' SQNR most) until the simulation meets the bound; the choice is
    confirmed by quantizing afresh with those units in float (their neighbours' ranges are calibrated anew),
    taking a few more steps while that, or LiteRT's run of the file, still misses."""
    from edgecnn.formats.int8_mixed import FloatUnitSearch, compute_units, leaf_blocks

    target = measure.target
    normalized = torch.from_numpy(quantized.encoding.decode(quantized.encoding.encode(measure.images)))

    def simulate(graph: torch.fx.GraphModule, count: int, batch: int = 1) -> np.ndarray:
        with torch.no_grad():
            return np.concatenate(
                [graph(normalized[i : min(i + batch, count)]).numpy() for i in range(0, count, batch)]
            ).astype(np.float64)

    # The search runs thousands of simulated images; per image, the fake-quantized graph's time is
    # mostly per-operator overhead, so it runs them 64 at a time on a graph that takes any batch
    # (measured: DenseNet-121's 73 units took 1,424 s at batch 1, on a loaded machine).
    searchable = quantize(job, backbone, any_batch=True)
    units = compute_units(searchable.graph, leaf_blocks(searchable.network), WRAPPER_PREFIX)
    search = FloatUnitSearch(
        searchable.graph, units, lambda graph, count: simulate(graph, count, SEARCH_BATCH), measure.reference
    )
    label = f"tflite int8 misses {target}: units tried in float"
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
        console.say(f"[edgecnn] tflite {MIXED_PRECISION} ({MIXED_FILE}) not made: {outcome}")

    if not choice.met:  # no rebuild can be expected to do better than the search's own simulation
        give_up(
            f"float for the {len(chosen)} units that matter most (of {choice.total_units}, the most allowed) "
            f"reaches {target.metric} {choice.simulated:.4f} in simulation, short of {target.value:g}"
        )
        return None
    extra_steps = EXTRA_FLOAT_STEPS

    while True:
        checkpoint()
        with console.step(f"tflite {MIXED_PRECISION}: float for {', '.join(chosen)}, quantized afresh"):
            simulated = measure.of_logits(
                simulate(quantize(job, backbone, chosen, any_batch=True).graph, len(normalized), SEARCH_BATCH)
            )
        value = None
        if target.met(simulated):  # LiteRT's integer arithmetic rounds a little differently: it decides
            try:
                with console.step(f"tflite {MIXED_PRECISION}: written with float for {', '.join(chosen)}"):
                    mixed = export_mixed(job, quantize(job, backbone, chosen), chosen)
                    value = round(measure.of_file(job.work_dir / MIXED_FILE), 6)
            except ExportError as err:  # the pure int8 file stands; the failure is recorded with the search
                (job.work_dir / MIXED_FILE).unlink(missing_ok=True)
                found.tried.append(FloatUnitsTry(list(chosen), round(simulated, 6)))
                give_up(str(err))
                return None
        found.tried.append(FloatUnitsTry(list(chosen), round(simulated, 6), value))
        if value is not None:
            if target.met(value):
                break
            (job.work_dir / MIXED_FILE).unlink()
        step = search.grow(chosen, f"{label}: one more step") if extra_steps else None
        extra_steps -= 1
        if step is None:
            reached = f"{value:.4f} in LiteRT" if value is not None else f"{simulated:.4f} in simulation"
            give_up(f"float for {', '.join(chosen)} reaches {target.metric} {reached}, short of {target.value:g}")
            return None
        chosen = step[0]
    found.float_units, found.measured, found.outcome = list(chosen), value, SEARCH_MET
    details = _tflite_details(mixed)
    return dataclasses.replace(
        mixed,
        details=dataclasses.replace(
            details, target=str(target), measured=measure.record(value), measured_on=repair.measured_on, repair=repair
        ),
    )


def _tflite_details(artifact: Artifact) -> TFLiteDetails:
    if not isinstance(artifact.details, TFLiteDetails):
        raise TypeError(f"{artifact.path} carries {type(artifact.details).__name__}, not TFLiteDetails")
    return artifact.details


def _with_repair(artifact: Artifact, repair: Int8Repair) -> Artifact:
    return dataclasses.replace(artifact, details=dataclasses.replace(_tflite_details(artifact), repair=repair))


WRAPPER_PREFIX = "wrapped."  # litert_torch.to_channel_last_io keeps the network as its `wrapped` attribute


@dataclasses.dataclass
class QuantizedGraph:
    """The PT2E-converted int8 graph (the int8 model simulated in PyTorch), before LiteRT conversion."""

    graph: torch.fx.GraphModule
    quantizer: object
    sample: torch.Tensor
    network: torch.nn.Module  # the rewritten network it was exported from (module paths as in the backbone)
    encoding: Int8InputEncoding


def quantize(
    job: ExportJob, backbone: "torch.nn.Module | None" = None, float_units: Iterable[str] = (), any_batch: bool = False
) -> QuantizedGraph:
    """Export, annotate, calibrate and convert the network with PT2E; `float_units` left unquantized.

    `any_batch`: the graph takes any batch size, for simulating many images at once (it is never
    converted: the TFLite files have batch 1). Calibration still feeds one image at a time, in the same
    order, so its scales are the batch-1 graph's."""
    import litert_torch
    from litert_torch.quantize import pt2e_quantizer
    from torchao.quantization.pt2e import quantize_pt2e

    encoding = Int8InputEncoding.for_normalization(job.mean, job.std)
    normalized = [torch.from_numpy(encoding.decode(encoding.encode(image[None]))) for image in job.calibration]
    network = for_xnnpack(job.backbone if backbone is None else backbone, normalized[0].permute(0, 3, 1, 2), int8=True)
    int8_model = litert_torch.to_channel_last_io(network, args=[0]).eval()
    from litert_torch.quantize import pt2e_quantizer_utils

    quantizer = edge_quantizer(
        pt2e_quantizer.PT2EQuantizer, pt2e_quantizer_utils, encoding, network, frozenset(float_units), WRAPPER_PREFIX
    ).set_global(pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=True))
    # strict export: non-strict tracing silently leaves residual adds in float (docs/architecture.md)
    dynamic = {"args": ({0: torch.export.Dim("batch", min=1, max=1024)},)} if any_batch else None
    # an example of batch 2: torch.export fixes any axis whose example size is 1
    example = torch.cat([normalized[0]] * 2) if any_batch else normalized[0]
    graph = torch.export.export(int8_model, (example,), strict=True, dynamic_shapes=dynamic).module()
    int8_forms(graph)
    graph = quantize_pt2e.prepare_pt2e(graph, quantizer)
    with torch.no_grad():
        for image in console.track(normalized, f"tflite int8: calibrated on {len(normalized)} images"):
            checkpoint()  # batch 1: the graph's shapes are static
            graph(image)
    graph = quantize_pt2e.convert_pt2e(graph, fold_quantize=False)
    mark_inference_graph(graph)
    return QuantizedGraph(graph, quantizer, normalized[0], network, encoding)


def _convert(quantized: QuantizedGraph, path: Path, precision: Precision = Precision.INT8) -> None:
    import litert_torch
    from litert_torch.quantize.quant_config import QuantConfig

    with console.step(f"tflite {precision}: converted"), _quiet(), _converter_errors(precision):
        litert_torch.convert(
            quantized.graph, (quantized.sample,), quant_config=QuantConfig(pt2e_quantizer=quantized.quantizer)
        ).export(str(path))


@contextlib.contextmanager
def _strict_qdq():
    """The LiteRT converter in strict QDQ mode, where an operator left unquantized stays float.

    In the default mode the converter quantizes a float operator between int8 neighbours anyway, from
    the scales around it (measured: a conv left out of the quantizer came out as an int8 CONV_2D).
    litert_torch.convert takes no option for the mode, so its config constructor is wrapped for the call.
    """
    from litert_torch._convert import litert_converter

    original = litert_converter.converter_api_ext

    class _StrictConfig:
        def __getattr__(self, name):
            return getattr(original, name)

        @staticmethod
        def ConvertToTFLConfig():  # noqa: N802 (the converter's own name)
            config = original.ConvertToTFLConfig()
            config.strict_qdq_mode = True
            return config

    litert_converter.converter_api_ext = _StrictConfig()
    try:
        yield
    finally:
        litert_converter.converter_api_ext = original


def export_mixed(job: ExportJob, quantized: QuantizedGraph, float_units: list[str]) -> Artifact:
    """int8 with `float_units` in float (as `quantized` leaves them): int8 input and output, float operators
    only inside those units."""
    from ai_edge_litert import _pywrap_modify_model_interface as interface

    strict = job.work_dir / _STRICT_FILE
    with _strict_qdq():
        _convert(quantized, strict, MIXED_PRECISION)
    # strict mode keeps float graph I/O behind a QUANTIZE and a DEQUANTIZE; this drops them (int8 = 9)
    try:
        status = interface.modify_model_interface(str(strict), str(job.work_dir / MIXED_FILE), 9, 9)
    finally:
        strict.unlink(missing_ok=True)
    if status != 0:
        raise ExportError(f"LiteRT could not give {MIXED_FILE} int8 input and output (status {status})")
    graph = inspect_graph(job.work_dir / MIXED_FILE)
    if graph.input_dtype != "int8" or graph.output_dtype != "int8":
        raise ExportError(f"{MIXED_FILE} has {graph.input_dtype}/{graph.output_dtype} I/O, not int8/int8")
    _check_input_encoding(graph, quantized.encoding)
    return Artifact(
        FormatName.TFLITE,
        MIXED_PRECISION,
        MIXED_FILE,
        int8_image_input("image", _shape(job), "NHWC", quantized.encoding.to_record()),
        logits_output("logits", [1, job.num_classes], "int8", _output_quantization(graph)),
        dataclasses.replace(
            _graph_details(graph),
            weights=f"{INT8_WEIGHTS}, float in the float layers",
            activations=f"{INT8_ACTIVATIONS}; float inside the float layers",
            float_layers=list(float_units),
            float_operators=len(graph.float_operators),
        ),
    )


def _output_quantization(graph: TFLiteGraph) -> Quantization:
    if graph.output_quantization is None:
        raise ExportError("the int8 TFLite output carries no quantization")
    return graph.output_quantization


def _check_input_encoding(graph: TFLiteGraph, encoding: Int8InputEncoding) -> None:
    if graph.input_quantization != Quantization(encoding.scale, encoding.zero_point):
        raise ExportError(
            f"int8 TFLite input quantization {graph.input_quantization} is not the fixed "
            f"input encoding (scale {encoding.scale}, zero point {encoding.zero_point})"
        )


def export_int8(
    job: ExportJob, backbone: "torch.nn.Module | None" = None, file: str = INT8_FILE
) -> tuple[Artifact, QuantizedGraph]:
    quantized = quantize(job, backbone)
    return _written_int8(job, quantized, file), quantized


def _written_int8(job: ExportJob, quantized: QuantizedGraph, file: str) -> Artifact:
    _convert(quantized, job.work_dir / file)
    int8_graph = inspect_graph(job.work_dir / file)
    check_pure_int8(int8_graph)
    _check_input_encoding(int8_graph, quantized.encoding)
    encoding = quantized.encoding
    return Artifact(
        FormatName.TFLITE,
        Precision.INT8,
        file,
        int8_image_input("image", _shape(job), "NHWC", encoding.to_record()),
        logits_output("logits", [1, job.num_classes], "int8", _output_quantization(int8_graph)),
        dataclasses.replace(_graph_details(int8_graph), weights=INT8_WEIGHTS, activations=INT8_ACTIVATIONS),
    )


# aten ops whose last argument says whether they compute in training mode
_MODE_OPS = {
    "aten.batch_norm.default": 5,
    "aten._native_batch_norm_legit.default": 5,
    "aten.dropout.default": 2,
    "aten.native_dropout.default": 2,
}
_TRAINING_ONLY = {"aten._native_batch_norm_legit_functional.default"}  # updates running stats: training


def training_mode_ops(graph: torch.fx.GraphModule) -> list[str]:
    """Operators of an exported graph that compute in training mode (batch statistics, active dropout)."""
    found = []
    for node in graph.graph.nodes:
        name = str(node.target)
        if node.op != "call_function":
            continue
        if name in _TRAINING_ONLY:
            found.append(f"{node.name} ({name})")
        elif name in _MODE_OPS and len(node.args) > _MODE_OPS[name] and node.args[_MODE_OPS[name]] is True:
            found.append(f"{node.name} ({name}, training=True)")
    return found


def mark_inference_graph(graph: torch.fx.GraphModule) -> None:
    """Clear the `training` flag of a converted PT2E graph, after checking that it computes in eval mode.

    `torch.export(...).module()` builds a new GraphModule whose flag starts True whatever mode the network
    was exported in, and PT2E keeps it. litert-torch reads only that flag ("Your model is converted in
    training mode"). The ops themselves were fixed at export: batch_norm and dropout carry training=False.
    `.eval()` is refused on exported graphs, so the flag is set through nn.Module. Measured: int8 files are
    byte-identical with and without this (mobilenet_v2 alpha 0.35 at 32 px). A graph that really computes
    in training mode fails here instead.
    """
    found = training_mode_ops(graph)
    if found:
        raise ExportError(
            f"the int8 graph computes in training mode ({', '.join(found[:3])}): export an eval-mode model"
        )
    torch.nn.Module.train(graph, False)


def _graph_details(graph: TFLiteGraph) -> TFLiteDetails:
    return TFLiteDetails(graph.operators, graph.xnnpack_partitions, graph.operators.get("QUANTIZE", 0))


def inspect_graph(path: Path) -> TFLiteGraph:
    """Operator counts, float operators, XNNPACK partitions and I/O quantization of a .tflite file."""
    interpreter = litert.interpreter(path)
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    ops = interpreter._get_ops_details()  # the only public-enough view of the graph after delegation
    real_ops = [op for op in ops if op["op_name"] != "DELEGATE"]
    floating = [
        op
        for op in real_ops
        if any(tensors[i]["dtype"] == np.float32 for i in [*op["inputs"], *op["outputs"]] if i >= 0)
    ]
    float_ops = [op["op_name"] for op in floating]
    # QUANTIZE and DEQUANTIZE at a float island's edges carry no module; the island's own operators do
    float_modules = [
        f"{path} ({op['op_name']})"
        for op in floating
        if op["op_name"] not in ("QUANTIZE", "DEQUANTIZE")
        for path in [litert.module_path(tensors[op["outputs"][0]]["name"]) if op["outputs"] else None]
        if path is not None
    ]
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    return TFLiteGraph(
        operators=dict(sorted(Counter(op["op_name"] for op in real_ops).items())),
        float_operators=float_ops,
        xnnpack_partitions=sum(op["op_name"] == "DELEGATE" for op in ops),
        input_dtype=np.dtype(inp["dtype"]).name,
        output_dtype=np.dtype(out["dtype"]).name,
        input_quantization=_quantization(inp),
        output_quantization=_quantization(out),
        float_modules=list(dict.fromkeys(float_modules)),
    )


def _quantization(detail: dict) -> Optional[Quantization]:
    scale, zero_point = detail["quantization"]
    return None if scale == 0 else Quantization(float(scale), int(zero_point))


def check_pure_int8(graph: TFLiteGraph) -> None:
    """int8 in, int8 out, and no operator touching a float tensor anywhere.

    That forbids every float island, and with it every QUANTIZE from float and DEQUANTIZE to float.
    A QUANTIZE from int8 to int8 is a requantization (a concat joining inputs of different scales):
    integer arithmetic, allowed, and counted in the manifest as `requantize_ops`.
    """
    problems = []
    if graph.input_dtype != "int8" or graph.output_dtype != "int8":
        problems.append(f"input/output are {graph.input_dtype}/{graph.output_dtype}, not int8/int8")
    if graph.float_operators:
        counts = Counter(graph.float_operators)
        where = f" (in {', '.join(graph.float_modules[:3])})" if graph.float_modules else ""
        problems.append("operators on float tensors: " + ", ".join(f"{n} x{c}" for n, c in counts.items()) + where)
    if problems:
        raise ExportError("int8 TFLite is not pure int8: " + "; ".join(problems))


class Runner:
    """Runs a .tflite on (N, R, R, 3) uint8 images one at a time (the graph has batch 1)."""

    engine = "LiteRT (XNNPACK)"
    emulated = False

    def __init__(self, path: Path, record: ArtifactRecord, threads: int = 0) -> None:
        self.interpreter = litert.interpreter(path, threads=threads or None)
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        encoding = record.input.encoding
        self.encoding = None if encoding is None else Int8InputEncoding.from_record(encoding)
        if (self.encoding is None) != (self.input["dtype"] == np.float32):
            raise ValueError(f"{path.name}: the manifest's input record does not match the model's input dtype")
        self.out_q = _quantization(self.output)

    def run(self, images: np.ndarray) -> np.ndarray:
        outputs = []
        for image in images:
            x = image[None].astype(np.float32) if self.encoding is None else self.encoding.encode(image[None])
            self.interpreter.set_tensor(self.input["index"], x)
            self.interpreter.invoke()
            y = self.interpreter.get_tensor(self.output["index"])
            if self.out_q is not None:
                y = (y.astype(np.float32) - self.out_q.zero_point) * self.out_q.scale
            outputs.append(y[0].astype(np.float32))
        return np.stack(outputs)
