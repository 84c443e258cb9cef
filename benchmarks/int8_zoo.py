"""`make int8-zoo`: what int8 costs each family's trained model, on all 10,000 Fashion-MNIST test images.

Per committed model of `edgecnn.weights.recipes`, and per `--int8-repair` (none, then auto): one
`edgecnn export --weights NAME --formats tflite`, then `edgecnn validate --dataset fashion-mnist`. The rows
give PyTorch fp32 top-1, int8 top-1, and how often int8's top-1 is PyTorch's (right or wrong), as
fractions. Written to benchmarks/results/int8-zoo.json, .md and .png (each file atomically).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

from edgecnn.exporter.pipeline import ExportRequest, run_export
from edgecnn.formats import FORMATS, parse_formats
from edgecnn.harness.validate import run_validation
from edgecnn.schema.details import TFLiteDetails
from edgecnn.schema.enums import FormatName, Precision, RepairMode
from benchmarks.plots import grouped_bars
from edgecnn.util import console
from edgecnn.util.atomic import replace_file
from edgecnn.util.errors import ExportError, UsageError
from edgecnn.util.tables import format_table
from edgecnn.weights.recipes import RECIPES
from edgecnn.weights.sources import PROJECT_MODELS
from edgecnn.zoo.spec import VariantSpec

SCHEMA = "edgecnn.int8-zoo/1"
RESULTS = Path(__file__).with_name("results")
# (--int8-repair, --int8-target): as exported plain, and repaired to a bound on top-1 agreement (which may
# write the int8-mixed file). `auto` with only the default bound (cosine 0.95) moved int8 top-1 by at most
# 0.13 pt from `none` on the first five of these models (measured in an earlier run of this table).
CONFIGURATIONS = (("none", None), ("auto", "agreement=0.99"))
INT8_PRECISIONS = ("int8-mixed", "int8")  # the artifact a row measures: the mixed one where it stands in


@dataclass(frozen=True)
class Int8ZooRow:
    model: str
    alpha: float
    resolution: int
    weights: str  # the --weights value that reproduces the row
    repair: str  # the --int8-repair value
    fp32_top1: float
    int8_top1: float
    agreement: float  # int8 top-1 = PyTorch fp32 top-1
    applied: list[str]  # remedies the repair kept ([] when int8 met its bound as it was)
    images: int
    target: Optional[str] = None  # the --int8-target value (None: the default)
    artifact: str = FORMATS[FormatName.TFLITE].file(Precision.INT8)  # the file measured: the pure int8 one, or the int8-mixed one
    float_layers: list[str] = field(default_factory=list)  # layers left in float (int8-mixed only)


def committed_models() -> list[str]:
    return [name for name, recipe in RECIPES.items() if (PROJECT_MODELS / recipe.checkpoint).is_file()]


def measure(name: str, repair: str, work: Path, count: Optional[int] = None, target: Optional[str] = None) -> Int8ZooRow:
    from edgecnn.schema.int8 import Int8Target

    recipe = RECIPES[name]
    user = None
    if recipe.third_party:  # a model from elsewhere, as `--model MODULE:ATTR --weights NAME` builds it
        from edgecnn.weights import user_model

        source = user_model.project_checkpoint(name)
        user = user_model.from_entry(recipe.model, recipe.model_args, resolution=recipe.resolution,
                                     labels=source.labels(recipe.num_classes), weights=name)
        spec = user.spec
    else:
        spec = VariantSpec.create(recipe.model, alpha=recipe.alpha, resolution=recipe.resolution,
                                  num_classes=recipe.num_classes, weights=name)
    out = work / f"{spec.id}_{repair}_{target or 'default'}"
    result = run_export(ExportRequest(spec, parse_formats("tflite"), weights=name, out=out, force=True,
                                      validate=False, int8_repair=RepairMode(repair), user_model=user,
                                      int8_target=Int8Target.parse(target) if target else None))
    report = run_validation(out, dataset=recipe.dataset, dataset_count=count, latency=None,
                            out=out / "dataset-test")
    int8 = next(a for p in INT8_PRECISIONS for a in report.artifacts if a.precision == p)
    record = next(a for a in result.manifest.artifacts if a.path == int8.path)
    pure = next((a for a in result.manifest.artifacts if a.precision == Precision.INT8), None)
    refused = next((r for r in result.manifest.refused if r.precision == Precision.INT8), None)
    mixed = int8.precision == Precision.INT8_MIXED
    # a mixed file is made from the network the pure int8 remedies left (equalised where that was kept), but
    # not from the pure file's fine-tuned weights
    details = (record if mixed or pure is None else pure).details
    assert isinstance(details, TFLiteDetails) and isinstance(record.details, TFLiteDetails)
    applied = list(details.repair.applied) if details.repair is not None else []
    tuning = details.repair.fine_tuning if details.repair is not None else None
    if tuning is not None and tuning.kept and not mixed:
        applied.append(f"int8-aware fine-tuning ({tuning.images.split(' ', 1)[0]} images)")
    float_layers = record.details.float_layers
    if refused is not None and mixed:
        applied.append(f"float for {len(float_layers)} layers (the pure int8 file missed the bound)")
    named = " ".join(str(v) for v in recipe.model_args.values() if isinstance(v, str))
    model = f"{recipe.model.partition(':')[0]} {named}" if recipe.third_party else recipe.model
    return Int8ZooRow(model, recipe.alpha, recipe.resolution, name, repair, report.labelled.pytorch_fp32.top1,
                      int8.accuracy.top1, int8.accuracy.top1_agreement, applied, report.labelled.images, target,
                      int8.path, list(float_layers))


def markdown(rows: list[Int8ZooRow], failures: tuple[str, ...] = ()) -> str:
    table = format_table(
        ["model", "alpha", "px", "--weights", "--int8-repair", "--int8-target", "file", "fp32 top-1", "int8 top-1",
         "drop", "agreement", "remedies kept"],
        [[r.model, f"{r.alpha:g}", str(r.resolution), r.weights, r.repair, r.target or "default", r.artifact,
          f"{r.fp32_top1:.2%}", f"{r.int8_top1:.2%}", f"{100 * (r.fp32_top1 - r.int8_top1):+.2f} pt",
          f"{r.agreement:.2%}", ", ".join(r.applied) or "-"] for r in rows], right=(1, 2, 7, 8, 9, 10))
    return "\n".join([
        "# int8 on the project's trained models (Fashion-MNIST test set)", "",
        f"{rows[0].images if rows else 0} test images per row. Drop: fp32 top-1 minus int8 top-1. Agreement: images "
        "whose int8 top-1 is PyTorch fp32's. `--int8-repair auto` also makes the int8 model with cross-layer "
        "equalisation, concat range equalisation and bias correction and keeps it where it measures better on "
        "5,000 training images that calibration did not use (remedies kept: - where the plain model was as good); where the bound is still "
        "missed it fine-tunes the int8 weights to PyTorch's logits on 10,000 other training images and keeps that "
        "where it measures better; where the bound is still missed it writes model_int8_mixed.tflite, int8 but for the fewest layers left in float that meet it "
        "(not pure int8; the row names it). Reproduce a row with `edgecnn export --model M --weights W "
        "--formats tflite --int8-repair R [--int8-target T]` (M: geffnet:create_model for a geffnet row) then "
        "`edgecnn validate EXPORT --dataset "
        "fashion-mnist`; the whole table with `make int8-zoo`.", "", "```", table, "```", "",
        *(["Bounds not met (the export failed; its pure int8 file kept as rejected):"] + [f"- {f}" for f in failures]
          + [""] if failures else []),
        "![int8 top-1 drop per family](int8-zoo.png)", ""])


def _configuration(row: Int8ZooRow) -> str:
    return f"--int8-repair {row.repair}" + (f" --int8-target {row.target}" if row.target else "")


def plot(rows: list[Int8ZooRow], path: Path) -> None:
    models = list(dict.fromkeys(r.weights for r in rows))
    configurations = list(dict.fromkeys(_configuration(r) for r in rows))
    series = {c: [next((100 * (r.fp32_top1 - r.int8_top1) for r in rows
                        if r.weights == m and _configuration(r) == c), float("nan")) for m in models]
              for c in configurations}
    grouped_bars(path, [next(r.model for r in rows if r.weights == m) for m in models], series,
                 ylabel="top-1 drop, fp32 - int8 (points)", reference=0.5, reference_label="0.5 pt bound",
                 title="int8 cost per family (Fashion-MNIST, 10,000 test images)")


def write(rows: list[Int8ZooRow], out: Path, failures: tuple[str, ...] = ()) -> None:
    out.mkdir(parents=True, exist_ok=True)
    document = {"schema": SCHEMA, "rows": [asdict(r) for r in rows], "failures": list(failures)}
    replace_file(out / "int8-zoo.json", lambda p: p.write_text(json.dumps(document, indent=1) + "\n"))
    replace_file(out / "int8-zoo.md", lambda p: p.write_text(markdown(rows, failures)))
    replace_file(out / "int8-zoo.png", lambda p: plot(rows, p))


def merged(previous: Path, rows: list[Int8ZooRow], failures: list[str],
           measured: list[str]) -> tuple[list[Int8ZooRow], list[str]]:
    """`rows` and `failures` of the models `measured`, with the rows and failures of the others as
    `previous` holds them, in committed-model order."""
    if not previous.is_file():
        return rows, failures
    document = json.loads(previous.read_text())
    if document.get("schema") != SCHEMA:
        raise UsageError(f"{previous} is not an {SCHEMA} document; run without --weights to rebuild it")
    kept = [Int8ZooRow(**row) for row in document["rows"] if row["weights"] not in measured]
    kept_failures = [f for f in document.get("failures", []) if f.split(" ", 1)[0] not in measured]
    order = {name: i for i, name in enumerate(committed_models())}
    return (sorted(kept + rows, key=lambda r: order.get(r.weights, len(order))),
            sorted(kept_failures + failures, key=lambda f: order.get(f.split(" ", 1)[0], len(order))))


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.int8_zoo", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--weights", nargs="*", help="only these recipes (default: every committed one)")
    args = parser.parse_args(argv)
    names = args.weights or committed_models()
    unknown = [n for n in names if n not in RECIPES or not (PROJECT_MODELS / RECIPES[n].checkpoint).is_file()]
    if unknown:
        print(f"edgecnn: error: no committed checkpoint for {', '.join(unknown)}", file=sys.stderr)
        return 2
    rows: list[Int8ZooRow] = []
    failures: list[str] = []
    try:
        with tempfile.TemporaryDirectory(prefix="edgecnn-int8-zoo-") as work:
            with console.third_party_to(Path(work) / "third-party.log"):
                for name in names:
                    for repair, target in CONFIGURATIONS:
                        try:
                            rows.append(measure(name, repair, Path(work), target=target))
                        except ExportError as err:  # a bound nothing meets: said, and the table goes on
                            failures.append(f"{name} --int8-repair {repair} --int8-target {target}: {err}")
                            console.say(f"[edgecnn] {failures[-1]}")
                            continue
                        console.say(f"[edgecnn] {name} {_configuration(rows[-1])}: {rows[-1].artifact} top-1 "
                                    f"{rows[-1].int8_top1:.2%} (fp32 {rows[-1].fp32_top1:.2%}, agreement "
                                    f"{rows[-1].agreement:.2%})")
    except UsageError as err:
        print(f"edgecnn: error: {err}", file=sys.stderr)
        return 2
    if args.weights:  # a partial run replaces its models' rows and keeps the others'
        try:
            rows, failures = merged(args.out / "int8-zoo.json", rows, failures, names)
        except (UsageError, KeyError, TypeError) as err:
            print(f"edgecnn: error: cannot merge into {args.out / 'int8-zoo.json'}: {err}", file=sys.stderr)
            return 2
    write(rows, args.out, failures)
    print(markdown(rows, failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
