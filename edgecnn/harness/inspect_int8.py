"""`edgecnn inspect-int8 EXPORT_DIR`: where int8 loses accuracy, operator by operator, named by PyTorch module.

The int8 values come from LiteRT's own execution: the interpreter keeps every intermediate tensor
(`experimental_preserve_all_tensors`). The float values come from replaying the same graph in float with
the PyTorch weights (`int8_replay`). Per int8 operator, on the same images:
- local error: the operator's int8 output against its float function fed the same dequantized int8
  inputs (what TFLite's QuantizationDebugger calls layer-wise error);
- accumulated error: the int8 network against the float network at that tensor, as SQNR and cosine;
- the output's scale, rmse / scale of the accumulated error, and the fraction of float values outside
  the int8 range of the tensor (clipped).
A conv is named by its conv module (`layer2.0.conv1`: the BatchNorm and activation fused into it are
part of it), other operators by the module whose forward computes them (`layer2.0` for a residual add).
SQNR is 10 log10(signal power / noise power), in dB; the local one per channel, averaged over channels
(`Errors.channel_sqnr_db` says why).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import nn

from edgecnn.formats import ArtifactRecord, litert
from edgecnn.formats.litert import module_path
from edgecnn.harness.images import parity_images
from edgecnn.harness.int8_replay import DATA_MOVEMENT, FloatReplay, GraphOp, read_graph
from edgecnn.harness.int8_source import made_from
from edgecnn.harness.layer_errors import Errors
from edgecnn.passes.modules import for_xnnpack
from edgecnn.schema.enums import FormatName, Precision
from edgecnn.schema.int8 import (
    INSPECTION_SCHEMA,
    BeforeAfter,
    Int8Inspection,
    LayerChange,
    LayerError,
    RepairComparison,
)
from edgecnn.schema.manifest import Manifest, open_export, to_json
from edgecnn.util import console
from edgecnn.util.atomic import atomic_folder, check_writable
from edgecnn.util.errors import UsageError
from edgecnn.util.interrupts import checkpoint, deferred_interrupts
from edgecnn.util.tables import format_table
from edgecnn.weights.reference import reference_model
from edgecnn.weights.user_model import matching_network
from edgecnn.zoo.models.layers import RawRGBInput

SCHEMA = INSPECTION_SCHEMA
FOLDER = "inspect-int8"
INSPECTED = {FormatName.TFLITE: FOLDER, FormatName.EXECUTORCH: f"{FOLDER}-pte"}  # int8 formats -> report folder
WORST = 10
REPLAY_MIN_COSINE = 0.9999  # the float replay must be PyTorch's network; measured 0.999999+ on the zoo
# modules whose name litert-torch gives to an operator that is really their parent's (ResNet's residual add
# carries the name of the ReLU that follows it)
_NAMING_LEAVES = (nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.BatchNorm2d, nn.Identity, nn.Dropout)
_ACTIVATION_OPS = {"RELU", "RELU6", "HARD_SWISH", "LOGISTIC", "TANH"}


def _module_name(op: GraphOp, replay: FloatReplay, modules: dict[str, nn.Module]) -> str:
    if op.index in replay.module_of:
        return replay.module_of[op.index]
    path = module_path(replay.tensors[op.outputs[0]]["name"])
    if path is None or path not in modules:
        return f"(operator {op.index})"
    if isinstance(modules[path], _NAMING_LEAVES) and op.kind not in _ACTIVATION_OPS and "." in path:
        return path.rsplit(".", 1)[0]
    return path


def inspect(
    root: Path, manifest: Manifest, record: ArtifactRecord, images: np.ndarray, source: str, backbone: nn.Module
) -> Int8Inspection:
    """Per operator of the int8 TFLite `record`, its error against the PyTorch `backbone` on `images`."""
    encoding, backbone = made_from(record, manifest, backbone)
    interpreter = litert.interpreter(root / record.path, threads=1, keep_all_tensors=True)
    ops = read_graph(root / record.path)
    sample = torch.from_numpy(encoding.decode(encoding.encode(images[:1]))).permute(0, 3, 1, 2)
    network = for_xnnpack(backbone, sample)  # the network the int8 file was converted from
    replay = FloatReplay(interpreter, ops, network, sample)
    modules = dict(network.named_modules())
    produced = {i for op in ops for i in op.outputs}
    input_index = interpreter.get_input_details()[0]["index"]
    output_index = interpreter.get_output_details()[0]["index"]
    reported = [op for op in ops if op.kind not in DATA_MOVEMENT]
    local = {op.index: Errors() for op in reported}
    accumulated = {op.index: Errors() for op in reported}
    replay_check = Errors()

    def dequantized(index: int) -> torch.Tensor:
        q = np.asarray(interpreter.get_tensor(index))
        scale, zero_point = replay.tensors[index]["quantization"]
        return torch.from_numpy(np.asarray((q.astype(np.float32) - zero_point) * scale if scale else q, np.float32))

    for image in console.track(images, f"{record.path}: every operator on {len(images)} images"):
        checkpoint()
        codes = encoding.encode(image[None])
        interpreter.set_tensor(input_index, codes)
        interpreter.invoke()
        decoded = torch.from_numpy(encoding.decode(codes))
        floats: dict[int, torch.Tensor] = {input_index: decoded}
        with torch.no_grad():
            for op in ops:
                data = op.inputs[:1] if op.index in replay.weights else op.inputs
                float_in = [
                    floats[i] if i in produced or i == input_index else dequantized(i) if i >= 0 else None for i in data
                ]
                out = op.outputs[0]
                floats[out] = replay.run(op, float_in)
                if op.kind in DATA_MOVEMENT:
                    continue
                y_local = replay.run(op, [dequantized(i) if i >= 0 else None for i in data])
                y_q, y_float = dequantized(out).numpy(), floats[out].numpy()
                local[op.index].add(y_local.numpy(), y_q)
                acc = accumulated[op.index]
                acc.add(y_float, y_q)
                acc.count += y_float.size
                scale, zero_point = replay.tensors[out]["quantization"]
                if scale:
                    low, high = (-128 - zero_point) * scale, (127 - zero_point) * scale
                    acc.clipped += int(np.sum((y_float < low) | (y_float > high)))
            pytorch = network(decoded.permute(0, 3, 1, 2)).numpy()
        replay_check.add(pytorch, floats[output_index].numpy())
    if replay_check.cosine() < REPLAY_MIN_COSINE:
        raise UsageError(
            f"the float replay of {record.path} does not reproduce PyTorch (logits cosine "
            f"{replay_check.cosine():.6f}): this export's graph is not the network it names"
        )
    layers: list[LayerError] = []
    for op in reported:
        acc = accumulated[op.index]
        scale, zero_point = replay.tensors[op.outputs[0]]["quantization"]
        layers.append(
            LayerError(
                index=len(layers),
                module=_module_name(op, replay, modules),
                op=op.kind,
                local_sqnr_db=local[op.index].channel_sqnr_db(),
                local_cosine=round(local[op.index].cosine(), 6),
                sqnr_db=acc.sqnr_db(),
                cosine=round(acc.cosine(), 6),
                scale=float(scale),
                zero_point=int(zero_point),
                rmse_over_scale=round(acc.rmse() / scale, 4) if scale else 0.0,
                clipped_fraction=round(acc.clipped / max(acc.count, 1), 6),
            )
        )
    return Int8Inspection(
        manifest.variant, record.path, int(len(images)), source, round(replay_check.cosine(), 6), layers
    )


def write_inspection(inspection: Int8Inspection, folder: Path) -> None:
    with atomic_folder(folder, replace=True) as work:
        (work / "layers.json").write_text(json.dumps(to_json(inspection), indent=1) + "\n")
        (work / "layers.md").write_text(markdown(inspection))
        plot(inspection, work / "layers.png")


def table(inspection: Int8Inspection, count: int = WORST) -> str:
    rows = [
        [
            layer.module,
            layer.op,
            f"{layer.local_sqnr_db:.1f}",
            f"{layer.sqnr_db:.1f}",
            f"{layer.cosine:.4f}",
            f"{layer.scale:.4g}",
            f"{layer.rmse_over_scale:.2f}",
            f"{layer.clipped_fraction:.2%}",
        ]
        for layer in inspection.worst(count)
    ]
    return format_table(
        ["module", "int8 op", "local SQNR dB", "SQNR dB", "cosine", "scale", "rmse/scale", "clipped"],
        rows,
        right=(2, 3, 4, 5, 6, 7),
    )


def worst_line(inspection: Int8Inspection, count: int = 3) -> str:
    """The layers to look at first, in one line."""
    return "worst layers by their own error: " + ", ".join(
        f"{layer.module} ({layer.op}, local SQNR {layer.local_sqnr_db:.1f} dB)" for layer in inspection.worst(count)
    )


def markdown(inspection: Int8Inspection) -> str:
    lines = [
        f"# int8 layers of {inspection.variant} ({inspection.artifact})",
        "",
        f"{len(inspection.layers)} int8 operators on {inspection.images} images ({inspection.images_source}). "
        "Local SQNR: the operator's int8 output against its float function (PyTorch's weights) fed the "
        "same dequantized int8 inputs, per channel. SQNR and cosine: the int8 network against the float "
        "network at that tensor. Clipped: float values outside the tensor's int8 range. The float "
        f"replay of the graph gives PyTorch's logits to cosine {inspection.replay_cosine:.6f}.",
        *(
            [
                "",
                f"The int8 values come from {inspection.method}. Its logits against the runtime's on the same "
                f"images: cosine {inspection.runtime_cosine:.6f}"
                + (
                    f"; {inspection.runtime_same_codes:.2%} of the int8 output codes equal, none more than "
                    f"{inspection.runtime_code_difference} apart (XNNPACK rounds in integers, the graph in float)."
                    if inspection.runtime_same_codes is not None
                    else "."
                ),
            ]
            if inspection.method is not None
            else []
        ),
        "",
        f"## The worst {min(WORST, len(inspection.layers))} by local error",
        "",
        "```",
        table(inspection),
        "```",
        "",
        "![SQNR along the depth](layers.png)",
        "",
    ]
    return "\n".join(lines)


def plot(inspection: Int8Inspection, path: Path) -> None:
    figure(inspection).savefig(path, dpi=100)
    import matplotlib.pyplot as plt

    plt.close("all")


WORST_LABELLED = 3


def figure(inspection: Int8Inspection):  # -> matplotlib Figure, laid out
    """SQNR along the depth. The worst layers are numbered on the plot and named in a box beside it: module
    paths are long, and the worst layers are often neighbours, whose names written at the points overlapped."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = inspection.layers
    fig, ax = plt.subplots(figsize=(max(8, 0.12 * len(layers)), 4.5))
    x = [layer.index for layer in layers]
    ax.plot(x, [layer.sqnr_db for layer in layers], "-o", markersize=3, label="accumulated SQNR (network)")
    local = [(layer.index, layer.local_sqnr_db) for layer in layers]
    ax.plot([i for i, _ in local], [v for _, v in local], "s", markersize=4, label="local SQNR (layer alone)")
    worst = inspection.worst(WORST_LABELLED)
    # each number beside its point: below it, or above, or to its right when neighbours already took a side
    sides = [((0, -6), "center", "top"), ((0, 6), "center", "bottom"), ((7, 0), "left", "center")]
    for rank, layer in enumerate(worst, 1):
        crowded = sum(abs(other.index - layer.index) <= 3 for other in worst[: rank - 1])
        offset, ha, va = sides[min(crowded, len(sides) - 1)]
        ax.annotate(
            str(rank),
            (layer.index, layer.local_sqnr_db),
            fontsize=8,
            fontweight="bold",
            xytext=offset,
            textcoords="offset points",
            ha=ha,
            va=va,
            color="tab:red",
            bbox={"boxstyle": "round,pad=0.1", "facecolor": "white", "edgecolor": "none", "alpha": 0.8},
        )
    _finish_sqnr_plot(
        fig,
        ax,
        [v for _, v in local] + [layer.sqnr_db for layer in layers],
        f"{inspection.variant}: int8 error along the depth ({inspection.artifact})",
    )
    names = "\n".join(
        f"{rank}  {layer.module} ({layer.op}): local SQNR {layer.local_sqnr_db:.1f} dB"
        for rank, layer in enumerate(worst, 1)
    )
    legend = fig.text(
        0.01,
        0.01,
        "worst layers by their own error (numbered on the plot)\n" + names,
        fontsize=8,
        ha="left",
        va="bottom",
        family="monospace",
    )
    fig.canvas.draw()  # the axes give way to the names below them
    height = legend.get_window_extent().transformed(fig.transFigure.inverted()).height
    fig.set_size_inches(fig.get_size_inches()[0], fig.get_size_inches()[1] * (1 + height))
    fig.tight_layout(rect=(0, height / (1 + height) + 0.01, 1, 1))
    return fig


def _finish_sqnr_plot(fig, ax, values: list[float], title: str, path: Optional[Path] = None) -> None:
    """Axes, limits (80 dB at most: beyond, a layer is as good as exact), legend, and the PNG if `path`."""
    import matplotlib.pyplot as plt

    ax.set_xlabel("int8 operator (network order)")
    ax.set_ylabel("SQNR (dB, higher is better)")
    ax.set_ylim(bottom=min([0.0] + values) - 2, top=min(80, max(values + [10.0]) + 5))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=100)
        plt.close(fig)


def run_inspection(
    export_dir: Path,
    images: Optional[Path] = None,
    count: int = 8,
    model: Optional[nn.Module] = None,
    out: Optional[Path] = None,
    artifact: Optional[str] = None,
) -> tuple[Int8Inspection, Path]:
    """`edgecnn inspect-int8`: inspect the export's int8 file `artifact` (default: the int8 TFLite, else the int8
    .pte) and write `out` (default EXPORT_DIR/inspect-int8/, or inspect-int8-pte/ for the .pte; an export handed
    over read-only can be inspected elsewhere).

    An export of a model from outside the zoo keeps its reference as a program, which has no modules to name
    layers by: `model` (normalised input, as exported) is then the user's network, checked against it."""
    if count < 1:
        raise UsageError(f"--count must be at least 1, got {count}")
    with deferred_interrupts():
        manifest = open_export(export_dir)
        int8 = [a for a in manifest.artifacts if a.precision == Precision.INT8 and a.format in INSPECTED]
        int8.sort(key=lambda a: list(INSPECTED).index(a.format))
        record = next((a for a in int8 if artifact is None or a.path == artifact), None)
        if record is None:
            have = ", ".join(a.path for a in int8) or "none"
            raise UsageError(
                f"{export_dir} has no int8 file {artifact or 'to inspect'} (its int8 files: {have}; inspect-int8 reads "
                "the int8 TFLite and the int8 .pte)"
            )
        out = export_dir / INSPECTED[record.format] if out is None else out
        check_writable(out.parent)
        photos, source = parity_images(manifest, count, images)
        if manifest.origin is not None:
            if model is None:
                raise UsageError(
                    f"{export_dir} holds a model from outside the zoo ({manifest.origin.built_by}); per-layer "
                    "inspection names its modules, so name the model again: --model MODULE:ATTR [--model-args "
                    "JSON] [--weights FILE] (from Python: run_inspection(..., model=the_module))"
                )
            backbone = matching_network(manifest, export_dir, model, photos)
        else:
            with console.step(f"{manifest.variant}: PyTorch reference rebuilt"):
                wrapped = reference_model(manifest, export_dir)
            assert isinstance(wrapped, RawRGBInput)  # reference_model rebuilds the network in its normalisation
            backbone = wrapped.model.eval()
        if record.format == FormatName.EXECUTORCH:
            from edgecnn.harness.inspect_pte import inspect_pte

            inspection = inspect_pte(export_dir, manifest, record, photos, source, backbone)
        else:
            inspection = inspect(export_dir, manifest, record, photos, source, backbone)
        write_inspection(inspection, out)
    return inspection, out


REPAIR_FOLDER = "int8-repair"  # inside the validation report's folder


def repair_comparison(before: Int8Inspection, after: Int8Inspection, remedies: list[str]) -> RepairComparison:
    """Per layer, its local and accumulated SQNR in the int8 file before repair and in the one kept.

    Both files come from the same network (the remedies keep its float function), so their operators
    are matched in network order by module and operator."""
    unmatched: dict[tuple[str, str], list[LayerError]] = {}
    for layer in after.layers:
        unmatched.setdefault((layer.module, layer.op), []).append(layer)
    layers = []
    for old in before.layers:
        candidates = unmatched.get((old.module, old.op))
        if not candidates:
            continue
        new = candidates.pop(0)
        layers.append(
            LayerChange(old.index, old.module, old.op, old.local_sqnr_db, new.local_sqnr_db, old.sqnr_db, new.sqnr_db)
        )
    return RepairComparison(
        variant=after.variant,
        remedies=remedies,
        images=after.images,
        images_source=after.images_source,
        output_sqnr_db=BeforeAfter(_output_sqnr(before), _output_sqnr(after)),
        worst_local_sqnr_db=BeforeAfter(_worst_local(before), _worst_local(after)),
        layers=layers,
    )


def _output_sqnr(inspection: Int8Inspection) -> Optional[float]:
    return inspection.layers[-1].sqnr_db if inspection.layers else None


def _worst_local(inspection: Int8Inspection) -> Optional[float]:
    return min((layer.local_sqnr_db for layer in inspection.layers), default=None)


def repair_markdown(comparison: RepairComparison, count: int = WORST) -> str:
    changed = sorted(comparison.layers, key=lambda layer: -abs(layer.local_sqnr_db_after - layer.local_sqnr_db_before))
    rows = [
        [
            layer.module,
            layer.op,
            f"{layer.local_sqnr_db_before:.1f}",
            f"{layer.local_sqnr_db_after:.1f}",
            f"{layer.sqnr_db_before:.1f}",
            f"{layer.sqnr_db_after:.1f}",
        ]
        for layer in changed[:count]
    ]
    out, worst = comparison.output_sqnr_db, comparison.worst_local_sqnr_db
    return "\n".join(
        [
            f"# int8 layers of {comparison.variant} before and after repair",
            "",
            f"Remedies kept: {', '.join(comparison.remedies)}. On {comparison.images} images "
            f"({comparison.images_source}): output SQNR {_db_text(out.before)} -> {_db_text(out.after)} dB, worst "
            f"local SQNR {_db_text(worst.before)} -> {_db_text(worst.after)} dB.",
            "",
            f"## The {len(rows)} layers whose own error changed most",
            "",
            "```",
            format_table(
                ["module", "int8 op", "local before", "local after", "SQNR before", "SQNR after"],
                rows,
                right=(2, 3, 4, 5),
            ),
            "```",
            "",
            "![SQNR before and after repair](layers.png)",
            "",
        ]
    )


def _db_text(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.1f}"


def plot_repair(comparison: RepairComparison, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = comparison.layers
    x = list(range(len(layers)))
    fig, ax = plt.subplots(figsize=(max(8, 0.12 * len(layers)), 4.5))
    for when, color in (("before", "tab:red"), ("after", "tab:blue")):
        ax.plot(
            x,
            [getattr(layer, f"sqnr_db_{when}") for layer in layers],
            "-",
            color=color,
            label=f"accumulated SQNR, {when} repair",
        )
        ax.plot(
            x,
            [getattr(layer, f"local_sqnr_db_{when}") for layer in layers],
            ".",
            color=color,
            alpha=0.6,
            label=f"local SQNR, {when} repair",
        )
    _finish_sqnr_plot(
        fig,
        ax,
        [
            v
            for layer in layers
            for v in (layer.local_sqnr_db_before, layer.local_sqnr_db_after, layer.sqnr_db_before, layer.sqnr_db_after)
        ],
        f"{comparison.variant}: int8 error before and after repair",
        path,
    )


def write_repair_comparison(comparison: RepairComparison, folder: Path) -> None:
    with atomic_folder(folder, replace=True) as work:
        (work / "layers.json").write_text(json.dumps(to_json(comparison), indent=1) + "\n")
        (work / "layers.md").write_text(repair_markdown(comparison))
        plot_repair(comparison, work / "layers.png")
