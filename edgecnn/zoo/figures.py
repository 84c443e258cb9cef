"""Recorded per-model figures, so `edgecnn list` need not build and profile 31 models (a test keeps them equal)."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Optional, Sequence

from edgecnn.util.atomic import replace_file
from edgecnn.util.tables import format_table

FIGURES_FILE = Path(__file__).with_name("figures.json")
SCHEMA = "edgecnn.zoo-figures/1"
FOOTNOTE = "MACs are multiply-accumulates (1 MAC = 2 FLOPs), of convolutions and matrix products, at batch 1."


@dataclass(frozen=True)
class ModelFigures:
    """One model at alpha 1.0, its default resolution and 1000 classes."""

    name: str
    family: str
    default_resolution: int
    params: int
    macs: int
    published_top1: Optional[float]
    torchvision_compatible: bool


def recorded(path: Optional[Path] = None) -> list[ModelFigures]:
    """The figures in `path` (default FIGURES_FILE), sorted by name."""
    data = json.loads(Path(path or FIGURES_FILE).read_text(encoding="utf-8"))
    if data.get("schema") != SCHEMA:
        raise ValueError(f"{path or FIGURES_FILE}: schema {data.get('schema')!r}, expected {SCHEMA!r}")
    return sorted((ModelFigures(**m) for m in data["models"]), key=lambda f: f.name)


def measure() -> list[ModelFigures]:
    """Build every registered model on the meta device and profile it at its default resolution (slow)."""
    import torch

    from edgecnn.zoo.profile import profile
    from edgecnn.zoo.registry import create_model, get_model_info, list_models

    out = []
    for name in list_models():
        info = get_model_info(name)
        with torch.device("meta"):
            model = create_model(name, alpha=1.0, num_classes=1000)
        prof = profile(model, info.default_resolution)
        out.append(
            ModelFigures(
                name=name,
                family=info.family,
                default_resolution=info.default_resolution,
                params=prof.params,
                macs=prof.macs,
                published_top1=info.reference.top1,
                torchvision_compatible=info.torchvision_compatible,
            )
        )
    return sorted(out, key=lambda f: f.name)


def differences(recorded: Sequence[ModelFigures], measured: Sequence[ModelFigures]) -> list[str]:
    """One line per model missing from either side or per field that differs; empty if they agree."""
    rec = {f.name: f for f in recorded}
    mea = {f.name: f for f in measured}
    lines = []
    for name in sorted(set(rec) | set(mea)):
        if name not in rec:
            lines.append(f"{name}: measured but not recorded")
        elif name not in mea:
            lines.append(f"{name}: recorded but not a registered model")
        else:
            for fld in fields(ModelFigures):
                a, b = getattr(rec[name], fld.name), getattr(mea[name], fld.name)
                if a != b:
                    lines.append(f"{name}: {fld.name} recorded {a!r}, measured {b!r}")
    return lines


def write(figures: Sequence[ModelFigures], path: Optional[Path] = None) -> None:
    """Write `figures` as JSON atomically (temp file in the same folder, then os.replace)."""
    path = Path(path or FIGURES_FILE)
    data = {"schema": SCHEMA, "models": [asdict(f) for f in sorted(figures, key=lambda f: f.name)]}
    replace_file(path, lambda temporary: temporary.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8"))


def _millions(n: Optional[int]) -> str:
    return "-" if n is None else f"{n / 1e6:,.2f} M"


def list_table(figures: Optional[Sequence[ModelFigures]] = None) -> str:
    """What `edgecnn list` prints: the table of every model, a blank line, then the MACs footnote."""
    rows = [
        [
            f.name,
            f.family,
            f.default_resolution,
            _millions(f.params),
            _millions(f.macs),
            "-" if f.published_top1 is None else f"{f.published_top1:.1f}",
            "yes" if f.torchvision_compatible else "",
        ]
        for f in (recorded() if figures is None else figures)
    ]
    table = format_table(
        ["model", "family", "resolution", "params", "MACs", "top-1 %", "torchvision keys"], rows, right=(2, 3, 4, 5)
    )
    return f"{table}\n\n{FOOTNOTE}"


def main(argv: Optional[Sequence[str]] = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m edgecnn.zoo.figures", description=__doc__)
    parser.add_argument("--write", action="store_true", help=f"record the measured figures in {FIGURES_FILE.name}")
    args = parser.parse_args(argv)
    measured = measure()
    if args.write:
        write(measured)
        print(f"wrote {len(measured)} models to {FIGURES_FILE}")
        return 0
    diffs = differences(recorded() if FIGURES_FILE.exists() else [], measured)
    for line in diffs:
        print(line)
    if diffs:
        print(f"{len(diffs)} difference(s); run `python -m edgecnn.zoo.figures --write` to record", file=sys.stderr)
        return 1
    print(f"{FIGURES_FILE.name} matches all {len(measured)} models")
    return 0


if __name__ == "__main__":
    sys.exit(main())
