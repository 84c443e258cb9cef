"""The studies' one chart: a value per model, one bar per setting side by side, and a reference line."""
from __future__ import annotations

from pathlib import Path


def grouped_bars(path: Path, labels: list[str], series: dict[str, list[float]], *, ylabel: str, title: str,
                 reference: float, reference_label: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(7, 0.9 * len(labels)), 4.5))
    width = 0.8 / max(len(series), 1)
    for k, (name, values) in enumerate(series.items()):
        offset = (k - (len(series) - 1) / 2) * width
        ax.bar([i + offset for i in range(len(labels))], values, width, label=name)
    ax.axhline(reference, color="gray", linestyle="--", linewidth=1, label=reference_label or None)
    ax.set_xticks(range(len(labels)), labels, rotation=45 if len(labels) > 6 else 0,
                  ha="right" if len(labels) > 6 else "center", fontsize=7)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")  # the path may be a temporary name: no suffix to go by
    plt.close(fig)
