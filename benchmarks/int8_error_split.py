"""`python -m benchmarks.int8_error_split --weights NAME`: where a trained model's int8 error comes from.

When float units cannot repair an int8 model (`int8.float_units`), the question is whether a few tensors
cost it most or every tensor a little. On the PT2E graph the int8 TFLite is converted from (the int8 model
simulated in PyTorch), the logits are compared with PyTorch's (SQNR in dB, top-1 agreement):
- with every rounding of the int8 model;
- with only the weights rounded, and with only the activations rounded;
- with the activations rounded on their int8 step but never clipped (is it range or resolution?);
- with 16-bit activations over the same ranges and int8 weights (TFLite's 16x8 scheme), which says what
  int16 activations would buy if a converter could write them;
- with each activation tensor alone left unrounded, ranked by what that gains;
- and, when the int8 TFLite file is given, that file run by LiteRT with XNNPACK and with LiteRT's own
  reference kernels: against PyTorch, against each other, and against the simulation. Two correct int8
  implementations differ by a rounding step here and there; if their logits differ about as much as either
  differs from PyTorch, the network amplifies a single step's difference to the size of its whole int8
  error, and no choice of ranges or of a few float layers can make its int8 agree reliably.

Written to benchmarks/results/int8-error-split-NAME.json, .md and .png (each file atomically).
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import enum
import json
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from torch import fx

from edgecnn.int8.float_units import is_dequantize, is_quantize, module_path
from edgecnn.util import console
from edgecnn.util.atomic import replace_file
from edgecnn.util.metrics import logits_sqnr_db, top1_agreement
from edgecnn.util.tables import format_table

SCHEMA = "edgecnn.int8-error-split/2"
RESULTS = Path(__file__).with_name("results")
BATCH = 250  # images per simulated forward
SHOWN = 20  # tensors in the table and the chart


class Rounding(enum.Enum):
    WEIGHTS = "weights"
    ACTIVATIONS = "activations"


class ActivationGrid(enum.Enum):
    INT8_UNCLIPPED = "each int8 step, no clipping"
    INT16 = "16 bits, symmetric over the int8 range (TFLite's 16x8)"


@dataclass(frozen=True)
class Closeness:
    """Logits of a simulated int8 graph against PyTorch's."""

    sqnr_db: float
    agreement: float  # top-1 equal to PyTorch's


@dataclass(frozen=True)
class KernelSpread:
    """The int8 TFLite file run by LiteRT two ways, on the same images."""

    xnnpack: Closeness  # against PyTorch
    reference_kernels: Closeness  # LiteRT's built-in kernels, without XNNPACK, against PyTorch
    between_kernels: Closeness  # XNNPACK's logits against the reference kernels'
    xnnpack_vs_simulation: Closeness  # XNNPACK's logits against the PT2E graph's


@dataclass(frozen=True)
class TensorGain:
    tensor: str  # the quantize node of the PT2E graph
    module: Optional[str]  # the module path of the operator that computes it
    operator: str  # that operator's node name (conv2d_3, mul_7, add_2, ...)
    scale: float
    gain_db: float  # logit SQNR with this tensor alone unrounded, minus the int8 graph's
    agreement: float


@dataclass(frozen=True)
class ErrorSplit:
    weights: str
    images: int
    int8: Closeness
    weights_only: Closeness  # activations unrounded
    activations_only: Closeness  # weights unrounded
    unclipped: Closeness  # activations rounded on their int8 step, never clipped
    activations_16bit: Closeness  # 16x8: activations on 16 bits over their int8 range, weights int8
    tensors: list[TensorGain]  # every activation tensor, largest gain first
    litert: Optional[KernelSpread] = None


def _rounded_value(dequantize: fx.Node) -> Optional[fx.Node]:
    """What a dequantize node gives back rounded: the input of its quantize node, or None."""
    source = dequantize.args[0]
    if isinstance(source, fx.Node) and is_quantize(source) and isinstance(source.args[0], fx.Node):
        return source.args[0]
    return None


def without_rounding(graph: fx.GraphModule, rounding: Rounding) -> fx.GraphModule:
    """A copy of a converted PT2E graph in which the weights' (get_attr) or the activations' quantize ->
    dequantize pairs pass their value through unrounded."""
    graph = copy.deepcopy(graph)
    for node in list(graph.graph.nodes):
        value = _rounded_value(node) if is_dequantize(node) else None
        if value is not None and (value.op == "get_attr") == (rounding is Rounding.WEIGHTS):
            node.replace_all_uses_with(value)
    graph.graph.eliminate_dead_code()
    graph.recompile()
    return graph


def activation_quantizers(graph: fx.GraphModule) -> list[fx.Node]:
    return [n for n in graph.graph.nodes if is_quantize(n) and isinstance(n.args[0], fx.Node)
            and n.args[0].op != "get_attr"]


def with_tensor_unrounded(graph: fx.GraphModule, tensor: str) -> fx.GraphModule:
    """A copy of `graph` in which the activation quantized by node `tensor` reaches its readers unrounded."""
    graph = copy.deepcopy(graph)
    quantizer = next(n for n in graph.graph.nodes if n.name == tensor)
    for reader in list(quantizer.users):
        if is_dequantize(reader):
            reader.replace_all_uses_with(quantizer.args[0])
    graph.graph.eliminate_dead_code()
    graph.recompile()
    return graph


def with_activation_grid(graph: fx.GraphModule, grid_kind: ActivationGrid) -> fx.GraphModule:
    """A copy of `graph` whose activations are rounded on another grid (16 bits: zero point 0, as TFLite's
    16x8 mode has it)."""
    graph = copy.deepcopy(graph)
    for quantizer in activation_quantizers(graph):
        value, scale, zero_point, low, high, _ = quantizer.args[:6]
        if grid_kind is ActivationGrid.INT8_UNCLIPPED:
            grid = (scale, zero_point, -2 ** 31, 2 ** 31 - 1, torch.int32)
        else:
            widest = max(abs(low - zero_point), abs(high - zero_point)) * scale
            grid = (widest / 32767, 0, -32767, 32767, torch.int16)
        quantizer.args = (value, *grid)
        for reader in list(quantizer.users):
            if is_dequantize(reader):
                reader.args = (quantizer, *grid, *reader.args[6:])
    graph.recompile()
    return graph


def closeness(logits: np.ndarray, reference: np.ndarray) -> Closeness:
    return Closeness(round(logits_sqnr_db(logits, reference), 3), top1_agreement(logits, reference))


def split_error(graph: fx.GraphModule, images: torch.Tensor, reference: np.ndarray, weights: str = "",
                module_prefix: str = "") -> ErrorSplit:
    """Every measurement of the module docstring, on `images` as the graph takes them."""
    def measure(candidate: fx.GraphModule) -> Closeness:
        with torch.no_grad():
            logits = torch.cat([candidate(images[i:i + BATCH]) for i in range(0, len(images), BATCH)])
        return closeness(logits.numpy().astype(np.float64), reference)

    int8 = measure(graph)
    weights_only = measure(without_rounding(graph, Rounding.ACTIVATIONS))
    activations_only = measure(without_rounding(graph, Rounding.WEIGHTS))
    unclipped = measure(with_activation_grid(graph, ActivationGrid.INT8_UNCLIPPED))
    activations_16bit = measure(with_activation_grid(graph, ActivationGrid.INT16))
    gains = []
    quantizers = activation_quantizers(graph)
    for node in console.track(quantizers, f"int8 error split: each of {len(quantizers)} activations unrounded"):
        alone = measure(with_tensor_unrounded(graph, node.name))
        gains.append(TensorGain(node.name, module_path(node.args[0], module_prefix), node.args[0].name,
                                float(node.args[1]), round(float(alone.sqnr_db - int8.sqnr_db), 3), alone.agreement))
    gains.sort(key=lambda g: -g.gain_db)
    return ErrorSplit(weights, len(images), int8, weights_only, activations_only, unclipped, activations_16bit, gains)


def markdown(split: ErrorSplit) -> str:
    rows = [["int8 (every rounding)", f"{split.int8.sqnr_db:.2f}", f"{split.int8.agreement:.2%}"],
            ["weights rounded, activations float", f"{split.weights_only.sqnr_db:.2f}",
             f"{split.weights_only.agreement:.2%}"],
            ["activations rounded, weights float", f"{split.activations_only.sqnr_db:.2f}",
             f"{split.activations_only.agreement:.2%}"],
            ["activations rounded on their int8 step, never clipped", f"{split.unclipped.sqnr_db:.2f}",
             f"{split.unclipped.agreement:.2%}"],
            ["16-bit activations, int8 weights (16x8, simulated)", f"{split.activations_16bit.sqnr_db:.2f}",
             f"{split.activations_16bit.agreement:.2%}"]]
    tensors = [[g.module or "-", g.operator, f"{g.scale:.4g}", f"{g.gain_db:+.2f}", f"{g.agreement:.2%}"]
               for g in split.tensors[:SHOWN]]
    kernels = []
    if split.litert is not None:
        spread = split.litert
        pairs = [["XNNPACK (as a phone runs it)", "PyTorch", spread.xnnpack],
                 ["LiteRT's reference kernels", "PyTorch", spread.reference_kernels],
                 ["XNNPACK", "LiteRT's reference kernels", spread.between_kernels],
                 ["XNNPACK", "the PT2E simulation", spread.xnnpack_vs_simulation]]
        kernels = ["The int8 TFLite file itself, run by LiteRT two ways on the same images. Two correct int8 "
                   "implementations differ by a rounding step here and there: when they differ from each other about "
                   "as much as from PyTorch, the network amplifies one step to the size of its whole int8 error.", "",
                   "```", format_table(["logits of", "against", "SQNR dB", "top-1 agreement"],
                                       [[a, b, f"{c.sqnr_db:.2f}", f"{c.agreement:.2%}"] for a, b, c in pairs],
                                       right=(2, 3)), "```", ""]
    return "\n".join([
        f"# Where int8 error comes from: {split.weights}", "",
        f"The PT2E graph the int8 TFLite is converted from, simulated on {split.images} Fashion-MNIST test images; "
        "logits against PyTorch's. Reproduce with `python -m benchmarks.int8_error_split --weights "
        f"{split.weights} --count {split.images}`.", "", "```",
        format_table(["rounding", "logit SQNR dB", "top-1 agreement"], rows, right=(1, 2)), "```", "", *kernels,
        f"Each of the {len(split.tensors)} activation tensors alone left unrounded, the {SHOWN} that gain most:", "",
        "```", format_table(["module", "operator", "scale", "SQNR gain dB", "agreement"], tensors, right=(2, 3, 4)),
        "```", "", f"![SQNR gain per activation tensor](int8-error-split-{split.weights}.png)", ""])


def plot(split: ErrorSplit, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5))
    gains = [g.gain_db for g in split.tensors]
    ax.bar(range(len(gains)), gains, width=1.0)
    ax.axhline(split.activations_only.sqnr_db - split.int8.sqnr_db, color="gray", linestyle="--", linewidth=1,
               label="every activation's rounding removed, minus the int8 graph's")
    ax.set_xlabel("activation tensor, ranked by gain")
    ax.set_ylabel("logit SQNR gain (dB)")
    ax.set_title(f"{split.weights}: one activation tensor unrounded at a time "
                 f"(int8 {split.int8.sqnr_db:.1f} dB)", fontsize=10)
    ax.set_yscale("symlog", linthresh=0.1)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")  # the path may be a temporary name: no suffix to go by
    plt.close(fig)


def write(split: ErrorSplit, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"int8-error-split-{split.weights}"
    document = {"schema": SCHEMA, **asdict(split)}
    writers: dict[str, Callable[[Path], object]] = {
        ".json": lambda p: p.write_text(json.dumps(document, indent=1) + "\n"),
        ".md": lambda p: p.write_text(markdown(split)), ".png": lambda p: plot(split, p)}
    for suffix, writer in writers.items():
        replace_file(stem.with_suffix(suffix), writer)
    return [stem.with_suffix(s) for s in writers]


def kernel_spread(path: Path, images: np.ndarray, encoding, simulated: np.ndarray,
                  reference: np.ndarray) -> KernelSpread:
    """The int8 TFLite file at `path` on uint8 `images`, run with XNNPACK and with the reference kernels;
    `simulated` and `reference` are the PT2E graph's and PyTorch's logits on the same images."""
    from edgecnn.formats.tflite import litert_logits

    with console.step("int8 error split: the TFLite file run with XNNPACK and the reference kernels"):
        xnnpack = litert_logits(path, images, encoding)
        builtin = litert_logits(path, images, encoding, reference_kernels=True)
    return KernelSpread(closeness(xnnpack, reference), closeness(builtin, reference), closeness(xnnpack, builtin),
                        closeness(xnnpack, simulated))


def measure_recipe(name: str, count: int, work_dir: Path) -> ErrorSplit:
    """The split of a committed Fashion-MNIST model, calibrated as its export is (100 images), with its int8
    TFLite file written to `work_dir` and run both ways."""
    from edgecnn.data.datasets import get_dataset
    from edgecnn.formats import tflite
    from trained_int8 import trained_int8

    trained = trained_int8(name, work_dir)
    recipe, backbone = trained.recipe, trained.job.backbone
    images, _ = get_dataset(recipe.dataset).model_inputs("test", recipe.resolution, indices=range(count))
    normalized = trained.normalized(images)  # NHWC, as the int8 graph takes it
    with torch.no_grad():
        reference = backbone(normalized.permute(0, 3, 1, 2)).numpy().astype(np.float64)
    graph = tflite.quantize(trained.job, backbone, any_batch=True).graph
    split = split_error(graph, normalized, reference, name, tflite.WRAPPER_PREFIX)
    artifact, quantized = tflite.export_int8(trained.job, backbone)
    with torch.no_grad():
        simulated = torch.cat([graph(normalized[i:i + BATCH]) for i in range(0, count, BATCH)]).numpy()
    spread = kernel_spread(work_dir / artifact.path, images, quantized.encoding, simulated.astype(np.float64), reference)
    return dataclasses.replace(split, litert=spread)


def main(argv: Optional[list[str]] = None) -> int:
    from edgecnn.weights.recipes import RECIPES
    from edgecnn.weights.sources import PROJECT_MODELS

    parser = argparse.ArgumentParser(prog="python -m benchmarks.int8_error_split",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--weights", required=True, help="a committed Fashion-MNIST model, e.g. fashion-mnist-efficientnet-b0")
    parser.add_argument("--count", type=int, default=1000, help="test images (default 1000)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.weights not in RECIPES or not (PROJECT_MODELS / RECIPES[args.weights].checkpoint).is_file():
        print(f"edgecnn: error: no committed checkpoint named {args.weights}", file=sys.stderr)
        return 2
    if not 1 <= args.count <= 10000:
        print(f"edgecnn: error: --count must be 1..10000, not {args.count}", file=sys.stderr)
        return 2
    torch.set_num_threads(1)  # as every export computes (formats are deterministic at one thread)
    with tempfile.TemporaryDirectory(prefix="edgecnn-int8-split-") as work:
        with console.third_party_to(Path(work) / "third-party.log"):
            split = measure_recipe(args.weights, args.count, Path(work))
    written = write(split, args.out)
    print(markdown(split))
    console.say(f"[edgecnn] written: {', '.join(str(p) for p in written)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
