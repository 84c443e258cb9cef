"""The `edgecnn` command line: argument parsing, and each command handed to the module that does it.

Heavy modules (torch, the converters) are imported inside the commands that need them, so that `edgecnn
list` and `--help` start in a fraction of a second.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
import tempfile
from contextlib import nullcontext
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, Optional, Sequence

from edgecnn.formats import FORMATS, parse_formats
from edgecnn.schema.enums import RepairMode
from edgecnn.util import console
from edgecnn.util.errors import DeviceError, ExportError, UsageError, ValidationFailed, WriteError
from edgecnn.util.tables import format_table

if TYPE_CHECKING:
    import torch

    from edgecnn.sweeps.variants import VariantRow
    from edgecnn.zoo.profile import Profile
    from edgecnn.zoo.registry import ModelInfo
    from edgecnn.zoo.spec import VariantSpec

DEFAULT_IMAGE_COUNT = 16  # edgecnn.harness.images.DEFAULT_IMAGE_COUNT (a test keeps them equal)
DATASET_NAMES = ("fashion-mnist",)  # edgecnn.data.datasets.DATASETS (a test keeps them equal)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2, as for every other bad input
        self.exit(2, f"{self.prog}: error: {message}{_closest_choice(message)}\n")


def _closest_choice(message: str) -> str:
    """'; did you mean export?' for argparse's "invalid choice: 'exprot' (choose from ...)"."""
    found = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
    if found is None:
        return ""
    close = difflib.get_close_matches(found.group(1), [c.strip(" '") for c in found.group(2).split(",")], n=1)
    return f"; did you mean {close[0]}?" if close else ""


# one example per command, shown under its --help
EXAMPLES = {
    "list": ["edgecnn list"],
    "summary": ["edgecnn summary --model mobilenet_v2 --alpha 0.75 --resolution 160"],
    "export": [
        "edgecnn export --model mobilenet_v2 --alpha 0.75",
        "edgecnn export --model efficientnet_lite0 --weights lite0-imagenet --formats tflite,executorch",
        "edgecnn export --model mynets.py:build --model-args '{\"num_classes\": 10}' --resolution 96 --weights my.pt",
    ],
    "validate": ["edgecnn validate export/mobilenet_v2_a0.75_r224 --labels-dir photos/ --count 32"],
    "bench": ["edgecnn bench export/mobilenet_v2_a0.75_r224 --threads 1,2 --runs 50"],
    "classify": ["edgecnn classify export/efficientnet_lite0_a1.0_r224 cat.jpg dog.png"],
    "inspect-int8": [
        "edgecnn inspect-int8 export/mobilenet_v2_a0.5_r32 --count 16 --out int8-report/",
        "edgecnn inspect-int8 export/mobilenet_v2_a0.5_r32 --artifact model_int8.pte",
    ],
    "android-assets": [
        "edgecnn android-assets export/efficientnet_lite0_a1.0_r224 mobilenet_v2_a0.5_r32",
        'edgecnn android-assets --variants "mobilenet_v2:0.35:128 mobilenet_v2:0.5:32:fashion-mnist-demo"',
    ],
    "web-demo": [
        "edgecnn web-demo export/efficientnet_lite0_a1.0_r224 --selftest",
        'edgecnn web-demo --variants "efficientnet_lite0:1.0:224:lite0-imagenet" --selftest',
    ],
    "web-serve": ["edgecnn web-serve --port 8443"],
    "app-report": ["edgecnn app-report benchmark.json"],
    "sweep": [
        "edgecnn sweep --model mobilenet_v2 --alphas 0.35,0.5 --resolutions 96,128 --labels-dir photos/",
        "edgecnn sweep --model my_nets.py:SmallNet --resolutions 64,96,128",
    ],
    "scorecard": ["edgecnn scorecard --models resnet18,mobilenet_v2 --alphas 1.0 --ray HOST:6379"],
}


def _suggest_option(parser: argparse.ArgumentParser, command: str, unknown: list[str]) -> NoReturn:
    """argparse's "unrecognized arguments", with the command's closest real option."""
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    options = [o for action in commands[command]._actions for o in action.option_strings]
    given = next((u.split("=", 1)[0] for u in unknown if u.startswith("-")), "")
    close = difflib.get_close_matches(given, options, n=1) if given else []
    hint = f"; did you mean {close[0]}?" if close else ""
    print(f"edgecnn {command}: error: unrecognized arguments: {' '.join(unknown)}{hint}", file=sys.stderr)
    raise SystemExit(2)


def _triple(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not three comma-separated numbers: {text!r}") from None
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"three comma-separated numbers (R,G,B), got {len(values)}")
    return values


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    return int(value) if value.is_integer() else value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="edgecnn",
        description="Classic CNNs, or your own, from PyTorch to phones: exported to ONNX, TFLite, Core ML and "
        "ExecuTorch, and every file checked against PyTorch.",
        epilog="example: edgecnn export --model mobilenet_v2 --alpha 0.75; edgecnn COMMAND --help for more",
    )
    parser.add_argument("--version", action="version", version=f"edgecnn {metadata.version('edgecnn')}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    sub.add_parser("list", help="every model: default resolution, parameters, MACs, published top-1")

    summary = sub.add_parser("summary", help="per-layer output shape, parameters and MACs of one variant")
    summary.add_argument("--model", required=True, help="a model of the zoo (edgecnn list)")
    _add_variant_arguments(summary)

    export = sub.add_parser(
        "export",
        help="export one variant, or your own model, to ONNX, TFLite, Core ML and ExecuTorch, with a manifest",
    )
    export.add_argument(
        "--model",
        required=True,
        help="a model of the zoo (edgecnn list), or your own as MODULE:ATTR: an importable module or a .py file, "
        "and a callable in it that returns an nn.Module mapping a normalised (N, 3, R, R) image to logits",
    )
    _add_variant_arguments(export, from_weights=True)
    own = export.add_argument_group("your own model (--model MODULE:ATTR)")
    own.add_argument("--model-args", help="JSON object of keyword arguments for ATTR, e.g. '{\"num_classes\": 10}'")
    own.add_argument("--mean", type=_triple, help="the normalisation's mean, R,G,B (default: ImageNet's)")
    own.add_argument("--std", type=_triple, help="the normalisation's std, R,G,B (default: ImageNet's)")
    own.add_argument("--labels", type=Path, help="class names, one per line (default: class_0, class_1, ...)")
    own.add_argument("--name", help="the variant id, a safe file name (default: from ATTR or its arguments, and R)")
    export.add_argument(
        "--formats", default=",".join(FORMATS), help=f"comma-separated, from: {', '.join(FORMATS)} (default: all)"
    )
    export.add_argument(
        "--weights",
        help="a state_dict file (torchvision layout; with --model MODULE:ATTR, that model's), 'torchvision' (its "
        "ImageNet checkpoint, downloaded on request), 'lite0-imagenet', or a checkpoint the project trained "
        "(fashion-mnist-demo, ...; see docs/trained-models.md); default: random init",
    )
    export.add_argument("--calib", type=Path, help="folder of calibration images (default: bundled photos)")
    export.add_argument("--calib-count", type=int, default=100, help="calibration images (default 100)")
    export.add_argument("--out", type=Path, help="output folder (default: export/<variant-id>)")
    export.add_argument("--force", action="store_true", help="replace an existing export folder")
    export.add_argument(
        "--int8-repair",
        choices=[m.value for m in RepairMode],
        default=RepairMode.AUTO.value,
        help="auto (default): where int8 has a bound, also make it with cross-layer equalisation "
        "and bias correction and keep whichever measures better; if the bound is still "
        "missed, fine-tune the int8 weights to PyTorch's logits (weights that come with a "
        "dataset) and keep that if better; if a stated bound is still missed, also write "
        "model_int8_mixed.tflite with float for the fewest layers that meet it (not pure "
        "int8); none: never",
    )
    export.add_argument(
        "--int8-target",
        help="the bound int8 must meet against PyTorch: cosine=V (worst logits "
        "cosine), agreement=V (top-1 equal to PyTorch's on V of the images) "
        "or top1=V (top-1 accuracy V x PyTorch's; needs a labelled dataset); "
        "default: the int8 gate's cosine=0.95 for trained weights, "
        "none for untrained",
    )
    export.add_argument(
        "--no-validate",
        dest="validate",
        action="store_false",
        help="skip the validation report (a 4-photo self-check still gates the export)",
    )
    _add_verbose(export)

    validate = sub.add_parser("validate", help="parity (and accuracy) of every artifact of an export, with a report")
    validate.add_argument("export_dir", type=Path, help="an export folder (holding manifest.json)")
    validate.add_argument("--images", type=Path, help="folder of photos for parity (default: bundled photos)")
    validate.add_argument(
        "--count", type=int, default=DEFAULT_IMAGE_COUNT, help=f"photos for parity (default {DEFAULT_IMAGE_COUNT})"
    )
    validate.add_argument(
        "--labels-dir", type=Path, help="labelled images, one subfolder per class: top-1/top-5 accuracy per artifact"
    )
    validate.add_argument(
        "--dataset",
        choices=DATASET_NAMES,
        help="accuracy on a known dataset's test split (the model must be trained on it)",
    )
    validate.add_argument("--dataset-count", type=int, help="with --dataset: only its first N test images")
    validate.add_argument("--label-map", type=Path, help="JSON object: class folder name -> label or class index")
    validate.add_argument("--out", type=Path, help="report folder (default: EXPORT_DIR/validation)")
    _add_latency_arguments(validate)
    validate.add_argument("--no-latency", dest="latency", action="store_false", help="parity and accuracy only")

    bench = sub.add_parser("bench", help="latency of every artifact of an export, here or on a phone (adb)")
    bench.add_argument("export_dir", type=Path, help="an export folder (holding manifest.json)")
    _add_latency_arguments(bench)
    bench.add_argument("--device", default="local", help="local (default) or adb: an Android phone over adb")
    bench.add_argument(
        "--benchmark-binary", type=Path, help="with --device adb: LiteRT's benchmark_model built for the phone"
    )
    bench.add_argument("--serial", help="with --device adb: which phone, if several are attached")
    bench.add_argument("--out", type=Path, help="report folder (default: EXPORT_DIR/benchmark)")

    classify = sub.add_parser("classify", help="top-5 classes of images from PyTorch and every artifact, side by side")
    classify.add_argument("export_dir", type=Path, help="an export folder (holding manifest.json)")
    classify.add_argument("images", type=Path, nargs="*", help="image files to classify")
    classify.add_argument(
        "--bundled-photos",
        action="store_true",
        help="also every natural photo that ships in scikit-image, matplotlib and scikit-learn",
    )
    classify.add_argument("--top", type=int, default=5, help="classes shown per image and model (default 5)")

    inspect = sub.add_parser("inspect-int8", help="per-layer int8 error of an export's int8 TFLite, by PyTorch module")
    inspect.add_argument("export_dir", type=Path, help="an export folder (holding manifest.json)")
    inspect.add_argument(
        "--images", type=Path, help="a folder of images (default: the export's own photos or test set)"
    )
    inspect.add_argument("--count", type=int, default=8, help="how many images (default 8)")
    inspect.add_argument(
        "--model",
        help="for an export of your own model: the MODULE:ATTR it was exported with (its modules name layers)",
    )
    inspect.add_argument("--model-args", help="with --model: its JSON keyword arguments, as at export")
    inspect.add_argument(
        "--weights", help="with --model: the state_dict file (or trained checkpoint) it was exported with"
    )
    inspect.add_argument(
        "--out", type=Path, help="report folder (default: EXPORT_DIR/inspect-int8, or inspect-int8-pte)"
    )
    inspect.add_argument(
        "--artifact", help="which int8 file: model_int8.tflite (default, if exported) or model_int8.pte"
    )

    assets = sub.add_parser("android-assets", help="the Android demo's assets: models, catalog, golden files")
    assets.add_argument(
        "exports",
        nargs="*",
        metavar="EXPORT",
        help="export folders, or export ids under --export-root, to bundle as they are",
    )
    assets.add_argument(
        "--variants",
        help='and/or space-separated model:alpha:resolution[:weights] (e.g. "mobilenet_v2:0.35:128"), '
        "exported under --export-root first where missing",
    )
    assets.add_argument(
        "--assets",
        type=Path,
        default=Path("android_demo/app/src/main/assets"),
        help="the app's assets folder (default android_demo/app/src/main/assets)",
    )
    assets.add_argument(
        "--export-root",
        type=Path,
        default=Path("export"),
        help="where exports are found, or made if missing (default export/)",
    )

    web = sub.add_parser("web-demo", help="the phone web demo: a static site running the exports in the browser")
    web.add_argument(
        "exports",
        nargs="*",
        metavar="EXPORT",
        help="export folders, or export ids under --export-root, to bundle as they are",
    )
    web.add_argument(
        "--variants",
        help='and/or space-separated model:alpha:resolution[:weights] (e.g. "mobilenet_v2:0.35:128"), '
        "exported under --export-root first where missing",
    )
    web.add_argument("--out", type=Path, default=Path("web_demo/site"), help="the site folder (default web_demo/site)")
    web.add_argument(
        "--export-root",
        type=Path,
        default=Path("export"),
        help="where exports are found, or made if missing (default export/)",
    )
    web.add_argument(
        "--npm-folder",
        type=Path,
        default=Path("web_demo"),
        help="the npm project with the page's runtimes and its self-test driver (default web_demo)",
    )
    web.add_argument(
        "--selftest",
        action="store_true",
        help="then run the page's self-test in headless Chromium (exit 1 if it fails)",
    )
    web.add_argument("--screenshot", type=Path, help="with --selftest: the page at a phone's viewport, as PNG")

    serve = sub.add_parser("web-serve", help="serve the web demo on the local network (HTTPS off localhost)")
    serve.add_argument(
        "--site", type=Path, default=Path("web_demo/site"), help="the built site (default web_demo/site)"
    )
    serve.add_argument("--host", default="0.0.0.0", help="address to listen on (default: all, for a phone)")
    serve.add_argument("--port", type=int, default=8443, help="port (default 8443)")
    serve.add_argument(
        "--http", action="store_true", help="plain HTTP even off localhost (a phone then gets no camera and one thread)"
    )

    app_report = sub.add_parser("app-report", help="the demo app's benchmark.json (adb pull) as a table and plot")
    app_report.add_argument("file", type=Path, help="the app's benchmark.json, pulled from the phone")
    app_report.add_argument("--out", type=Path, help="report folder (default: FILE's name + -report)")

    sweep = sub.add_parser("sweep", help="export and validate a width x resolution grid; table and Pareto plot")
    sweep.add_argument(
        "--model",
        required=True,
        help="a model of the zoo (edgecnn list), or MODULE:ATTR, your own (across resolutions)",
    )
    sweep.add_argument("--model-args", help="with MODULE:ATTR: a JSON object of keyword arguments")
    sweep.add_argument(
        "--mean", type=_triple, help="with MODULE:ATTR: the normalisation's mean, R,G,B (default: ImageNet's)"
    )
    sweep.add_argument(
        "--std", type=_triple, help="with MODULE:ATTR: the normalisation's std, R,G,B (default: ImageNet's)"
    )
    sweep.add_argument("--alphas", help=f"width multipliers, zoo models only (default {DEFAULT_SWEEP_ALPHAS})")
    sweep.add_argument("--resolutions", default="96,128,160,192,224", help="input sizes (default 96,128,160,192,224)")
    sweep.add_argument("--formats", default="tflite", help="formats per variant; must include tflite (default)")
    sweep.add_argument("--weights", help="as for export, for every variant (their widths must match)")
    sweep.add_argument("--calib", type=Path, help="folder of calibration images (default: bundled photos)")
    sweep.add_argument("--calib-count", type=int, default=100, help="calibration images (default 100)")
    sweep.add_argument("--labels-dir", type=Path, help="labelled images: accuracy per variant, accuracy frontier")
    sweep.add_argument("--label-map", type=Path, help="JSON object: class folder name -> label or class index")
    _add_latency_arguments(sweep)
    sweep.add_argument("--out", type=Path, help="sweep folder (default: export/sweep-MODEL)")
    _add_ray_argument(sweep)
    card = sub.add_parser(
        "scorecard",
        help="every registered model at its default resolution and chosen widths: "
        "size, parity, int8 fidelity and latency per variant",
    )
    card.add_argument("--models", help="comma-separated registered models (default: all)")
    card.add_argument("--alphas", default="1.0,0.5", help="width multipliers (default 1.0,0.5)")
    card.add_argument("--resolutions", help="instead of each model's default resolution")
    card.add_argument(
        "--formats",
        default="onnx,tflite,coreml,executorch",
        help="formats per variant; must include tflite (default: all four)",
    )
    card.add_argument("--calib-count", type=int, default=100, help="calibration images (default 100)")
    _add_latency_arguments(card)
    card.add_argument("--out", type=Path, default=Path("export") / "scorecard", help="default: export/scorecard")
    card.add_argument(
        "--render",
        type=Path,
        metavar="SCORECARD_JSON",
        help="measure nothing: write scorecard.md and .png (and the JSON, in the current schema) again beside "
        "SCORECARD_JSON, with today's registry figures (published top-1)",
    )
    _add_ray_argument(card)
    _add_verbose(validate, bench, classify, inspect, assets, web, sweep, card)
    for name, command in sub.choices.items():
        command.epilog = ("examples:\n" if len(EXAMPLES[name]) > 1 else "example:\n") + "\n".join(
            f"  {line}" for line in EXAMPLES[name]
        )
        command.formatter_class = argparse.RawDescriptionHelpFormatter
    return parser


def _add_verbose(*parsers: argparse.ArgumentParser) -> None:
    for parser in parsers:
        parser.add_argument(
            "--verbose",
            action="store_true",
            help="show the converters' and runtimes' own output live (by default: into a log file)",
        )


def _add_latency_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--threads", default="1,all", help="thread counts to time, comma-separated; 'all' = every core (default 1,all)"
    )
    parser.add_argument(
        "--runs", type=int, help="timed runs per configuration and thread count (default: as many as fit 1.5 s)"
    )


def _add_variant_arguments(parser: argparse.ArgumentParser, from_weights: bool = False) -> None:
    # with a named checkpoint (--weights lite0-imagenet, ...) what is not given is what it was trained as
    named = ", or what a named --weights was trained as" if from_weights else ""
    parser.add_argument(
        "--alpha", type=_number, default=None if from_weights else 1.0, help=f"width multiplier (default 1.0{named})"
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--resolution", type=_number, help=f"input size in pixels (default: the model's{named})")
    size.add_argument("--rho", type=_number, help="resolution multiplier: default x rho, to the nearest multiple of 8")
    parser.add_argument(
        "--num-classes",
        type=_number,
        default=None if from_weights else 1000,
        help=f"outputs of the classifier (default 1000{named})",
    )


def _meta_model(info: "ModelInfo", alpha: float = 1.0, num_classes: int = 1000) -> "torch.nn.Module":
    import torch

    from edgecnn.zoo.registry import create_model

    # Shapes are all a profile needs: building on the meta device allocates and initialises nothing.
    with torch.device("meta"):
        return create_model(info.name, alpha=alpha, num_classes=num_classes)


def cmd_list(args: argparse.Namespace) -> None:
    from edgecnn.zoo.figures import list_table

    print(list_table())  # recorded figures: building 31 models took 9 s of CPU (tests keep them equal)


def cmd_summary(args: argparse.Namespace) -> None:
    from edgecnn.zoo.profile import profile
    from edgecnn.zoo.registry import get_model_info
    from edgecnn.zoo.spec import VariantSpec

    spec = VariantSpec.create(
        args.model, alpha=args.alpha, resolution=args.resolution, rho=args.rho, num_classes=args.num_classes
    )
    info = get_model_info(spec.model)
    prof = profile(_meta_model(info, spec.alpha, spec.num_classes), spec.resolution)
    print(f"{spec.id}: {info.family}, input 1x3x{spec.resolution}x{spec.resolution}, {spec.num_classes} classes\n")
    rows = [
        [layer.name, layer.kind, "x".join(map(str, layer.output_shape)), f"{layer.params:,}", f"{layer.macs:,}"]
        for layer in prof.layers
    ]
    print(format_table(["layer", "type", "output", "params", "MACs"], rows, right=(3, 4)))
    print()
    print(_totals(prof, info, spec))


def _totals(prof: "Profile", info: "ModelInfo", spec: "VariantSpec") -> str:
    ref = info.reference
    is_reference_variant = spec.alpha == 1.0 and spec.resolution == info.default_resolution and spec.num_classes == 1000
    lines = [
        f"parameters         {prof.params:>16,}" + _beside(prof.params, ref.params, is_reference_variant),
        f"MACs               {prof.macs:>16,}" + _beside(prof.macs, ref.macs, is_reference_variant),
        f"activations (fp32) {prof.activation_bytes / 2**20:>14,.1f} MiB  (sum of every layer's output)",
        f"peak layer (fp32)  {prof.peak_activation_bytes / 2**20:>14,.1f} MiB  (largest input + output of one layer)",
    ]
    if ref.top1 is not None:
        lines.append(f"published top-1    {ref.top1:>16.2f}%  at alpha 1.0, {info.default_resolution}px ({ref.source})")
    if not is_reference_variant and (ref.params or ref.macs):
        lines.append(f"(reference figures are for alpha 1.0 at {info.default_resolution}px with 1000 classes)")
    return "\n".join(lines)


def _beside(value: int, reference: Optional[int], comparable: bool) -> str:
    if reference is None or not comparable:
        return ""
    if value == reference:
        return f"   reference {reference:,} (equal)"
    return f"   reference {reference:,} ({100 * (value - reference) / reference:+.2f}%)"


def _user_model(args: argparse.Namespace):
    """`--model MODULE:ATTR`: the user's model, built and checked (one line and exit 2 on anything wrong).

    `--weights` is a state_dict file, or a checkpoint the project trained of that model, which brings what it
    was trained as (model arguments, resolution, classes and their names, and its dataset's calibration)."""
    from edgecnn.weights import user_model
    from edgecnn.weights.sources import resolve, trained_variant

    for option, given in (("--alpha", args.alpha), ("--rho", args.rho)):
        if given is not None:
            raise UsageError(f"{option} applies to the zoo's models; your own model is exported as it is built")
    arguments = user_model.parse_arguments(args.model_args) if args.model_args is not None else None
    labels = user_model.read_labels(args.labels) if args.labels is not None else None
    trained = trained_variant(args.weights)
    if trained is not None:
        source = resolve(args.weights, args.model)
        arguments = trained.check_arguments(args.weights, arguments)
        args.resolution = args.resolution or trained.resolution
        labels = labels or source.labels(trained.num_classes)
    else:  # a file (or nothing) is read by the builder, not by the zoo's weights sources
        weights, args.weights = args.weights, None
    if args.resolution is None:
        raise UsageError("--model MODULE:ATTR needs --resolution (the input size in pixels)")
    return user_model.from_entry(
        args.model,
        arguments or {},
        resolution=args.resolution,
        name=args.name,
        mean=args.mean or user_model.IMAGENET_MEAN,
        std=args.std or user_model.IMAGENET_STD,
        labels=labels,
        num_classes=args.num_classes,
        weights=args.weights if trained is not None else weights,
    )


def _variant_spec(args: argparse.Namespace):
    from edgecnn.weights.sources import trained_variant
    from edgecnn.zoo.spec import VariantSpec

    for option in ("model_args", "mean", "std", "labels", "name"):
        if getattr(args, option) is not None:
            raise UsageError(f"--{option.replace('_', '-')} is for your own model (--model MODULE:ATTR)")
    trained = trained_variant(args.weights)
    alpha = _given(args.alpha, trained, "alpha", 1.0)
    num_classes = _given(args.num_classes, trained, "num_classes", 1000)
    if trained is not None:
        trained.check(args.weights, args.model, alpha, num_classes)
        if args.resolution is None and args.rho is None:
            args.resolution = trained.resolution
    return VariantSpec.create(
        args.model, alpha=alpha, resolution=args.resolution, rho=args.rho, num_classes=num_classes, weights=args.weights
    )


def cmd_export(args: argparse.Namespace) -> None:
    from edgecnn.exporter.pipeline import LOG_FILE, ExportRequest, run_export, summary_table
    from edgecnn.harness.report import VALIDATION_FOLDER, latency_table
    from edgecnn.schema.int8 import Int8Target
    from edgecnn.weights.user_model import is_entry

    user = _user_model(args) if is_entry(args.model) else None
    spec = user.spec if user is not None else _variant_spec(args)
    try:
        target = Int8Target.parse(args.int8_target) if args.int8_target is not None else None
    except ValueError as err:
        raise UsageError(str(err)) from None
    request = ExportRequest(
        spec,
        parse_formats(args.formats),
        weights=args.weights,
        calib_dir=args.calib,
        calib_count=args.calib_count,
        out=args.out,
        force=args.force,
        validate=args.validate,
        verbose=args.verbose,
        int8_repair=RepairMode(args.int8_repair),
        int8_target=target,
        user_model=user,
    )
    result = run_export(request)
    print(f"{request.target}: {spec.id}, weights: {result.manifest.weights.source}")
    print(summary_table(result.manifest))
    print(
        f"exported in {request.timings['total']:.1f} s; manifest: {request.target / 'manifest.json'}"
        + ("" if args.verbose else f"; converter output: {request.target / LOG_FILE}")
    )
    if result.report is not None:
        if result.report.latency is not None:
            print(latency_table(result.report.latency))
        print(f"validation report: {request.target / VALIDATION_FOLDER / 'report.md'} (.json, .png)")


def _given(value, trained, field: str, default):
    if value is not None:
        return value
    return getattr(trained, field) if trained is not None else default


def _latency_options(args: argparse.Namespace, **kwargs):
    from edgecnn.harness.latency import LatencyOptions, parse_threads

    return LatencyOptions(tuple(parse_threads(args.threads)), runs=args.runs, **kwargs)


def cmd_validate(args: argparse.Namespace) -> None:
    from edgecnn.harness.report import VALIDATION_FOLDER
    from edgecnn.harness.validate import run_validation, summary
    from edgecnn.schema.report import ValidationReport

    out = args.out if args.out is not None else args.export_dir / VALIDATION_FOLDER
    try:
        report = run_validation(
            args.export_dir,
            images=args.images,
            count=args.count,
            labels_dir=args.labels_dir,
            label_map=args.label_map,
            out=out,
            latency=_latency_options(args) if args.latency else None,
            dataset=args.dataset,
            dataset_count=args.dataset_count,
            verbose=args.verbose,
        )
    except ValidationFailed as err:  # the report was written: show it, then fail
        if not isinstance(err.report, ValidationReport):
            raise TypeError(f"validation failed without the report it wrote: {err}") from err
        print(summary(err.report, out))
        raise
    print(summary(report, out))


def cmd_bench(args: argparse.Namespace) -> None:
    from edgecnn.harness.bench import BENCHMARK_FOLDER, run_bench
    from edgecnn.harness.report import latency_table

    options = _latency_options(args)
    out = args.out if args.out is not None else args.export_dir / BENCHMARK_FOLDER
    with console.third_party_into(out, "bench.log", args.verbose):
        latency = run_bench(
            args.export_dir,
            options.threads,
            runs=args.runs,
            device=args.device,
            benchmark_binary=args.benchmark_binary,
            serial=args.serial,
            out=out,
        )
    print(latency_table(latency))
    print(f"report: {out / 'latency.md'} (.json, .png)")


def _add_ray_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ray",
        nargs="?",
        const=LOCAL_RAY,
        metavar="ADDRESS",
        help="one Ray task per variant: on a new local Ray sized to this machine, or on the "
        "cluster at ADDRESS (HOST:PORT of `ray start --head`); --out must be on a "
        "filesystem every node mounts",
    )


LOCAL_RAY = "local"
DEFAULT_SWEEP_ALPHAS = "0.35,0.5,0.75,1.0"


def _cluster(args: argparse.Namespace):
    from edgecnn.sweeps.variants import RayCluster

    if args.ray is None:
        return nullcontext(None)
    return RayCluster(None if args.ray == LOCAL_RAY else args.ray)


def _fail_on_failed_variants(rows: Sequence[VariantRow]) -> None:
    failed = [r for r in rows if r.failed]
    if failed:
        raise ExportError(
            f"{len(failed)} of {len(rows)} variants failed; first: {failed[0].variant}: {failed[0].error}"
        )


def cmd_sweep(args: argparse.Namespace) -> None:
    from edgecnn.sweeps.sweep import SweepRequest, parse_numbers, run_sweep, sweep_markdown
    from edgecnn.weights import user_model
    from edgecnn.zoo.registry import get_model_info

    entry, arguments, name = args.model, None, args.model
    if user_model.is_entry(args.model):  # checked before any work, as export checks it
        arguments = user_model.parse_arguments(args.model_args)
        trained = user_model.project_checkpoint(args.weights) if args.weights is not None else None
        if trained is not None:
            arguments = trained.trained_as.check_arguments(args.weights, arguments if args.model_args else None)
        module, _, attribute = args.model.rpartition(":")
        if module.endswith(".py"):  # Ray's workers start elsewhere
            entry = f"{Path(module).resolve()}:{attribute}"
        user_model.import_entry(entry)
        name = user_model.default_name(attribute, arguments, 0).removesuffix("_r0")
        alphas = parse_numbers(args.alphas, "alphas") if args.alphas is not None else [1.0]
    else:
        for option in ("model_args", "mean", "std"):
            if getattr(args, option) is not None:
                raise UsageError(f"--{option.replace('_', '-')} is for your own model (--model MODULE:ATTR)")
        get_model_info(args.model)  # an unknown model is refused before the numbers are looked at
        alphas = parse_numbers(args.alphas or DEFAULT_SWEEP_ALPHAS, "alphas")
    request = SweepRequest(
        entry,
        alphas,
        parse_numbers(args.resolutions, "resolutions", int),
        parse_formats(args.formats),
        args.out if args.out is not None else Path("export") / f"sweep-{name}",
        model_args=arguments,
        mean=tuple(args.mean) if args.mean else None,
        std=tuple(args.std) if args.std else None,
        weights=args.weights,
        calib_dir=args.calib,
        calib_count=args.calib_count,
        labels_dir=args.labels_dir,
        label_map=args.label_map,
        latency=_latency_options(args, budget_s=1.0),
    )
    with console.third_party_into(request.out, "sweep.log", args.verbose), _cluster(args) as cluster:
        request.cluster = cluster
        summary = run_sweep(request)
    print(sweep_markdown(summary))
    print(f"sweep: {request.out / 'sweep.md'} (.json, .png)")
    _fail_on_failed_variants(summary.rows)


def cmd_scorecard(args: argparse.Namespace) -> None:
    from edgecnn.sweeps.scorecard import ScorecardRequest, markdown, render, run_scorecard
    from edgecnn.sweeps.sweep import parse_numbers
    from edgecnn.zoo.registry import list_models

    if args.render is not None:
        card = render(args.render)
        print(markdown(card))
        print(f"scorecard: {args.render.parent / 'scorecard.md'} (.json, .png), rendered again from {args.render}")
        return
    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else list_models()
    request = ScorecardRequest(
        models,
        parse_numbers(args.alphas, "alphas"),
        parse_formats(args.formats),
        args.out,
        resolutions=parse_numbers(args.resolutions, "resolutions", int) if args.resolutions else None,
        calib_count=args.calib_count,
        latency=_latency_options(args, budget_s=1.0),
    )
    request.works()  # unknown models and widths refused before anything starts
    with console.third_party_into(request.out, "scorecard.log", args.verbose), _cluster(args) as cluster:
        request.cluster = cluster
        card = run_scorecard(request)
    print(markdown(card))
    print(f"scorecard: {request.out / 'scorecard.md'} (.json, .png)")
    _fail_on_failed_variants(card.rows)


def cmd_classify(args: argparse.Namespace) -> None:
    from edgecnn.harness.classify import format_results, run_classify

    images = list(args.images)
    if args.bundled_photos:
        from edgecnn.data.photos import dependency_photos

        images += dependency_photos()
    if not images:
        raise UsageError("give image files, or --bundled-photos")
    log = Path(tempfile.gettempdir()) / "edgecnn-classify.log"  # classify writes nothing of its own
    with console.third_party_to(None if args.verbose else log):
        results = run_classify(args.export_dir, images, args.top)
    print(format_results(results))


def cmd_inspect_int8(args: argparse.Namespace) -> None:
    from edgecnn.harness.inspect_int8 import run_inspection, table

    network = None
    if args.model is not None:
        from edgecnn.weights import user_model

        network = user_model.rebuild(args.model, user_model.parse_arguments(args.model_args), args.weights)
    elif args.model_args is not None or args.weights is not None:
        raise UsageError("--model-args and --weights go with --model")
    default = "inspect-int8-pte" if (args.artifact or "").endswith(".pte") else "inspect-int8"
    log_folder = args.out if args.out is not None else args.export_dir / default
    with console.third_party_into(log_folder, "inspect-int8.log", args.verbose):
        inspection, out = run_inspection(args.export_dir, args.images, args.count, network, args.out, args.artifact)
    print(
        f"{inspection.variant}: {len(inspection.layers)} int8 operators of {inspection.artifact} on "
        f"{inspection.images} images ({inspection.images_source}); the worst by their own error:"
    )
    print(table(inspection))
    print(f"inspection: {out / 'layers.md'} (.json, .png)")


def cmd_android_assets(args: argparse.Namespace) -> None:
    from edgecnn.android.assets import build_assets
    from edgecnn.apps.golden import export_folders, parse_variants

    folders = export_folders(args.exports, args.export_root)
    variants = parse_variants(args.variants) if args.variants else []
    with console.third_party_into(args.export_root, "android-assets.log", args.verbose):  # not into the app
        catalog = build_assets(variants, args.assets, args.export_root, folders)
    for m in catalog.model_files():
        print(f"{m.file}  {m.precision}  {m.bytes / 2**20:.2f} MiB  sha256 {m.sha256[:12]}")
    print(
        f"{args.assets / 'catalog.json'}: {len(catalog.model_files())} model files; golden image and tensors in "
        f"{args.assets / 'golden'}"
    )


def cmd_web_demo(args: argparse.Namespace) -> None:
    from edgecnn.apps.golden import export_folders, parse_variants
    from edgecnn.web.site import build_site

    if args.screenshot is not None and not args.selftest:
        raise UsageError("--screenshot is taken by the self-test: add --selftest")
    folders = export_folders(args.exports, args.export_root)
    variants = parse_variants(args.variants) if args.variants else []
    with console.third_party_into(args.export_root, "web-demo.log", args.verbose):  # not into the site
        catalog = build_site(variants, args.out, args.export_root, args.npm_folder, folders)
    for m in catalog.model_files():
        print(f"{m.file}  {m.precision}  {m.runtime}  {m.bytes / 2**20:.2f} MiB")
    print(
        f"{args.out}: {len(catalog.model_files())} model files; serve it with "
        f"`make web-serve` (edgecnn web-serve --site {args.out})"
    )
    if args.selftest:
        from edgecnn.web.browser import run_selftest

        outcome = run_selftest(args.out, args.screenshot, npm_folder=args.npm_folder)
        for entry in outcome["result"].get("files", []):
            verdict = "passed" if entry["passed"] else f"FAILED {entry.get('error', '')}".rstrip()
            timing = f"median {entry['medianMs']:.2f} ms" if "medianMs" in entry else ""
            print(f"self-test {entry['key']} ({entry['runtime']}): {verdict} {timing}")
        if not outcome["result"].get("passed"):
            failed: dict = next((f for f in outcome["result"].get("files", []) if not f["passed"]), {})
            reason = outcome["result"].get("error") or f"{failed.get('key')}: {failed.get('error')}"
            raise ValidationFailed(f"the page's self-test failed in {outcome['browser']}: {reason}")


def cmd_web_serve(args: argparse.Namespace) -> None:
    from edgecnn.web.serve import serve_forever

    try:
        serve_forever(args.site, args.host, args.port, False if args.http else None, console.say)
    except KeyboardInterrupt:
        console.say("[edgecnn] stopped serving")


def cmd_app_report(args: argparse.Namespace) -> None:
    import json

    from edgecnn.android.app_report import table, write_app_report

    out = write_app_report(args.file, args.out)
    print(table(json.loads((out / "app_benchmark.json").read_text())))
    print(f"report: {out / 'app_benchmark.md'} (.json, .png)")


COMMANDS = {
    "list": cmd_list,
    "summary": cmd_summary,
    "export": cmd_export,
    "validate": cmd_validate,
    "bench": cmd_bench,
    "sweep": cmd_sweep,
    "scorecard": cmd_scorecard,
    "classify": cmd_classify,
    "inspect-int8": cmd_inspect_int8,
    "android-assets": cmd_android_assets,
    "app-report": cmd_app_report,
    "web-demo": cmd_web_demo,
    "web-serve": cmd_web_serve,
}


# what a failure of each kind says before its message, and the exit code
_FAILURE_LINES = (
    (UsageError, "error", 2),
    (ExportError, "export failed", 1),
    (ValidationFailed, "validation failed", 1),
    (DeviceError, "on the device", 1),
    (WriteError, "cannot write", 1),
)
FAILURES = tuple(kind for kind, _, _ in _FAILURE_LINES)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        _suggest_option(parser, args.command, unknown)
    try:
        COMMANDS[args.command](args)
    except FAILURES as err:
        prefix, code = next((p, c) for kind, p, c in _FAILURE_LINES if isinstance(err, kind))
        print(f"edgecnn: {prefix}: {err}", file=sys.stderr)
        return code
    except KeyboardInterrupt:
        print("edgecnn: interrupted; nothing was written", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `edgecnn list | head`
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
