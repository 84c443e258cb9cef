"""The demo model's card: written from the training record and a validation report, never by hand.

`python -m edgecnn.harness.model_card REPORT` reads the report of
`edgecnn validate EXPORT --dataset fashion-mnist`, finds the training record of the checkpoint it was made from
(edgecnn/weights/checkpoints/<stem>.training.json, matched by sha256), and writes <stem>.md beside it with the
data, recipe, seed and every format's top-1 on the test set.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from edgecnn.util.atomic import replace_file
from edgecnn.util.errors import UsageError
from edgecnn.weights.sources import PROJECT_MODELS


def find_training_record(sha256: str, folder: Path = PROJECT_MODELS) -> tuple[Path, dict]:
    for path in sorted(folder.glob("*.training.json")):
        record = json.loads(path.read_text(encoding="utf-8"))
        if record.get("sha256") == sha256:
            return path, record
    raise UsageError(f"no training record in {folder} for a checkpoint with sha256 {sha256[:12]}...")


def render(record: dict, report: dict) -> str:
    recipe = record["recipe"]
    labelled = report["labelled"]
    if labelled is None:
        raise UsageError("the report has no labelled accuracy: validate with --dataset fashion-mnist")
    reference = labelled["pytorch_fp32"]
    rows = [f"| PyTorch fp32 (reference) | - | {100 * reference['top1']:.2f}% | - |"]
    for artifact in report["artifacts"]:
        accuracy = artifact.get("accuracy")
        if accuracy is None:
            rows.append(f"| {artifact['path']} | {artifact['precision']} | not run: {artifact.get('reason', '')} | - |")
            continue
        rows.append(
            f"| {artifact['path']} | {artifact['precision']} | {100 * accuracy['top1']:.2f}% | "
            f"{0.0 - 100 * accuracy['top1_drop']:+.2f} pt |"
        )  # 0.0 - x: no '-0.00'
    history = "\n".join(
        f"| {h['epoch']} | {h['train_loss']:.4f} | {100 * h['test_top1']:.2f}% | {h['seconds']:.0f} s |"
        for h in record["history"]
    )
    data = record["data"]
    machine = record["machine"]
    fastest = min(h["seconds"] for h in record["history"])
    tools = report.get("created_with", {})
    weights = report["weights"].get("name") or record["checkpoint"]
    arguments = recipe.get("model_args") or {}
    if ":" in recipe["model"]:  # a model from elsewhere, built by MODULE:ATTR
        title = f"{recipe['model']} {json.dumps(arguments)}, {recipe['resolution']} px"
        export = (
            f"`edgecnn export --model {recipe['model']} --weights {weights}` (its arguments, resolution "
            "and classes come from the checkpoint)"
        )
        layout = f"{recipe['model']}'s own layout"
    else:
        title = f"{recipe['model']} alpha {recipe['alpha']:g}, {recipe['resolution']} px"
        export = (
            f"`make export MODEL={recipe['model']}\nWEIGHTS={weights}` (width, resolution and classes come "
            "from the checkpoint)"
        )
        layout = f"torchvision's {recipe['model']} layout"
    return f"""# Model card: {title}, Fashion-MNIST

A model edgecnn trains itself (`python -m edgecnn.weights.training --weights {weights}`), so that the cost
of int8 can be measured on a real trained network. Export it with {export}.

- Checkpoint: `edgecnn/weights/checkpoints/{record["checkpoint"]}`
  (fp32 state_dict in {layout}, {record["parameters"]:,} parameters),
  sha256 `{record["sha256"]}`
- Classes (index order): {", ".join(report.get("class_names", [])) or "see labels.txt of an export"}

## Data
{data["source"]}: {data["train_images"]:,} training and {data["test_images"]:,} test images, 28x28 gray.
Preprocessing: {data["preprocessing"]}.
The normalisation (ImageNet mean/std, as for every edgecnn model) is folded into the exported graphs,
which take raw RGB 0..255.

## Recipe
| setting | value |
|---|---|
| epochs | {recipe["epochs"]} |
| batch size | {recipe["batch_size"]} |
| optimizer | {recipe["optimizer"]}, peak learning rate {recipe["peak_lr"]:g} |
| schedule | {recipe["schedule"]} |
| weight decay | {recipe["weight_decay"]:g} (not on BatchNorm or biases) |
| label smoothing | {recipe["label_smoothing"]:g} |
| augmentation | {recipe["augmentation"]} |
| seed | {recipe["seed"]} |

Trained in {record["seconds"] / 60:.1f} min wall time on {machine["threads"]} CPU threads ({machine["cpu"]}, torch \
{machine["torch"]}); the fastest epoch took {fastest:.0f} s ({recipe["epochs"]} such epochs: \
{fastest * recipe["epochs"] / 60:.1f} min), slower ones shared the cores with other jobs.

| epoch | train loss | test top-1 (PyTorch) | time |
|---|---|---|---|
{history}

## Accuracy of every exported format on the {labelled["images"]:,} test images
Measured by `make demo-card` (`edgecnn validate EXPORT --dataset fashion-mnist`); the int8 TFLite and ExecuTorch
files are full-integer (int8 input and output), calibrated on {report.get("calibration_count", 100)} training images.

| artifact | precision | top-1 | change vs PyTorch |
|---|---|---|---|
{chr(10).join(rows)}

Off macOS, Core ML is run by edgecnn's executor of the saved ML program (each op with PyTorch's kernel,
fp16 storage emulated); tools: torch {tools.get("torch", "?")}, onnxruntime {tools.get("onnxruntime", "?")},
ai-edge-litert {tools.get("ai-edge-litert", "?")}, coremltools {tools.get("coremltools", "?")},
executorch {tools.get("executorch", "?")}.
"""


def write_card(report_path: Path) -> Path:
    if not report_path.is_file():
        raise UsageError(f"report not found: {report_path}")
    report = json.loads(report_path.read_text(encoding="utf-8"))
    weights = report["weights"]
    if weights.get("kind") != "project":
        raise UsageError(
            f"{report_path} is not a report on a checkpoint edgecnn trained (weights: {weights['source']})"
        )
    record_path, record = find_training_record(weights["sha256"])
    export = Path(report["export"])
    from edgecnn.schema.manifest import open_export, read_labels

    manifest = open_export(export)  # the gate, as for every reader of an export
    report = {
        **report,
        "class_names": read_labels(export, manifest),
        "calibration_count": manifest.calibration.count,
    }
    card = record_path.with_name(record_path.name.replace(".training.json", ".md"))
    text = render(record, report)
    replace_file(card, lambda path: path.write_text(text))
    return card


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m edgecnn.harness.model_card REPORT_JSON", file=sys.stderr)
        return 2
    try:
        card = write_card(Path(args[0]))
    except UsageError as err:
        print(f"edgecnn: error: {err}", file=sys.stderr)
        return 2
    print(f"model card: {card}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
