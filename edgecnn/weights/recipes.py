"""The project's own trained models: one recipe per family, as data, keyed by its `--weights` name.

Each trains a small width at a small resolution on Fashion-MNIST (`python -m edgecnn.weights.training
--weights NAME`), to give int8 a real trained network per family to be measured on, over 10,000
labelled test images. The checkpoint, its training record and its model card ship in
`edgecnn/weights/checkpoints/`. The cost per epoch of each is in docs/trained-models.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

FASHION_MNIST = "fashion-mnist"


@dataclass(frozen=True)
class Recipe:
    model: str = "mobilenet_v2"  # a zoo name, or MODULE:ATTR for a model from elsewhere (`--model` takes both)
    model_args: dict[str, Any] = field(default_factory=dict)  # MODULE:ATTR's keyword arguments (`--model-args`)
    alpha: float = 0.5
    resolution: int = 32
    dataset: str = FASHION_MNIST
    num_classes: int = 10
    epochs: int = 12
    batch_size: int = 128
    optimizer: str = "SGD, momentum 0.9, Nesterov"
    peak_lr: float = 0.1
    schedule: str = "one-cycle: linear warm-up over the first 15% of steps, then cosine to 0"
    warmup_fraction: float = 0.15
    weight_decay: float = 4e-5
    label_smoothing: float = 0.1
    augmentation: str = "random crop of the image zero-padded by 2 (black, the background), horizontal flip"
    pad: int = 2
    seed: int = 0

    @property
    def third_party(self) -> bool:
        return ":" in self.model

    @property
    def stem(self) -> str:
        if self.third_party:  # geffnet:create_model {"model_name": "mnasnet_050"} -> geffnet_mnasnet_050_r32
            named = "_".join(str(v) for v in self.model_args.values() if isinstance(v, str))
            base = re.sub(r"\W+", "_", f"{self.model.partition(':')[0]}_{named}".strip("_"))
            return f"{base}_r{self.resolution}_fashion_mnist"
        return f"{self.model}_a{self.alpha:g}_r{self.resolution}_fashion_mnist"

    @property
    def checkpoint(self) -> str:
        return f"{self.stem}.pth"


# The demo model's recipe (91.19% top-1) is the default; the others change only what their family needs.
RECIPES: dict[str, Recipe] = {
    "fashion-mnist-demo": Recipe(),
    "fashion-mnist-resnet18": Recipe(model="resnet18", alpha=0.25, weight_decay=1e-4),
    "fashion-mnist-googlenet": Recipe(model="googlenet", alpha=0.25, weight_decay=1e-4),
    # alpha 0.125: at 0.25 its first Linear (7x7x128 -> 1024) made a 33.6 MB checkpoint, too big for git
    # (it reached 92.11% in 12 epochs, 49 min on one core)
    "fashion-mnist-vgg16": Recipe(model="vgg16", alpha=0.125, peak_lr=0.02, weight_decay=1e-4),
    "fashion-mnist-densenet121": Recipe(model="densenet121", alpha=0.25, weight_decay=1e-4),
    "fashion-mnist-mobilenet-v3-small": Recipe(model="mobilenet_v3_small", alpha=0.5),
    "fashion-mnist-efficientnet-b0": Recipe(model="efficientnet_b0", alpha=0.25),
    # two models no one here wrote (geffnet 1.0.2), at their own widths, through `--model geffnet:create_model`;
    # 8 epochs: at 32 px an epoch of these took 3.3 and 4.4 min on one core
    "fashion-mnist-geffnet-mnasnet-050": Recipe(
        model="geffnet:create_model", model_args={"model_name": "mnasnet_050", "num_classes": 10}, alpha=1.0, epochs=8
    ),
    "fashion-mnist-geffnet-mobilenetv3-large-075": Recipe(
        model="geffnet:create_model",
        model_args={"model_name": "mobilenetv3_large_075", "num_classes": 10},
        alpha=1.0,
        epochs=8,
    ),
}
