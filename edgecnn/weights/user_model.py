"""A model the user brings: `--model MODULE:ATTR [--model-args JSON]`, or an `nn.Module` handed to the Python API.

Each step checks one thing and says in one line what went wrong: the module and attribute exist (with close
matches), the callable returns an `nn.Module`, the state_dict fits, the model maps a normalised (1, 3, R, R)
image to (1, classes) logits, and torch.export can trace it (`program.trace`).
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import json
import pkgutil
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
from torch import nn

from edgecnn.schema.artifacts import sha256_of
from edgecnn.schema.enums import WeightsKind
from edgecnn.schema.manifest import SAFE_ID, Manifest, ModelOrigin, WeightsRecord
from edgecnn.util.errors import UsageError
from edgecnn.weights.loading import load_state_dict, load_weights
from edgecnn.zoo.models.layers import RawRGBInput

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FAMILY = "user model"  # the manifest's family of a model from outside the zoo
MIN_RESOLUTION, MAX_RESOLUTION = 8, 2048
BUILD_SEED = 0


def is_entry(text: str) -> bool:
    """`--model` names a callable (MODULE:ATTR) rather than a model of the zoo."""
    return ":" in text


@dataclass
class UserModelSpec:
    """What an export of a user's model needs besides the model itself: its id, size, classes and input."""

    name: str  # the variant id
    resolution: int
    num_classes: int
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    labels: Optional[list[str]] = None
    alpha: float = 1.0  # a user's model has no width multiplier; recorded as 1

    @property
    def id(self) -> str:
        return self.name

    @property
    def model(self) -> str:
        return self.name


@dataclass
class UserModel:
    """A checked user model: eval mode, normalised image in, logits out."""

    network: nn.Module
    spec: UserModelSpec
    origin: ModelOrigin
    weights: WeightsRecord


def parse_arguments(text: Optional[str]) -> dict[str, Any]:
    if text is None:
        return {}
    try:
        arguments = json.loads(text)
    except json.JSONDecodeError as err:
        raise UsageError(f"--model-args is not JSON: {err.msg} at character {err.pos}") from None
    if not isinstance(arguments, dict):
        raise UsageError(f"--model-args must be a JSON object of keyword arguments, got {type(arguments).__name__}")
    return arguments


def import_entry(entry: str) -> tuple[Callable[..., Any], Optional[str]]:
    """The callable `MODULE:ATTR` names, and the sha256 of MODULE where it is a .py file."""
    module_name, _, attribute = entry.rpartition(":")
    if not module_name or not attribute:
        raise UsageError(f"--model {entry!r} is not MODULE:ATTR (e.g. geffnet:create_model or my_net.py:Net)")
    file_sha256 = None
    if module_name.endswith(".py"):
        path = Path(module_name)
        if not path.is_file():
            raise UsageError(f"--model {entry!r}: no file {path}")
        file_sha256 = sha256_of(path)
        module = _import_file(path)
    else:
        module = _import_module(module_name)
    target: Any = module
    walked: list[str] = []
    for part in attribute.split("."):
        if not hasattr(target, part):
            where = ".".join([module_name, *walked]) if not module_name.endswith(".py") else module_name
            names = [n for n in dir(target) if not n.startswith("_")]
            raise UsageError(f"{where} has no attribute {part!r}{_close(part, names)}")
        target = getattr(target, part)
        walked.append(part)
    if not callable(target):
        raise UsageError(f"--model {entry!r} names a {type(target).__name__}, not a callable that builds the model")
    return target, file_sha256


def _import_module(name: str):
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name is not None and name != err.name and not name.startswith(err.name + "."):
            raise UsageError(f"importing {name} failed: {err}") from None  # a module it imports is missing
        parent = name.rpartition(".")[0]
        known = [m.name for m in pkgutil.iter_modules()] if not parent else []
        raise UsageError(f"no module named {name!r}{_close(name, known)}") from None
    except Exception as err:  # the user's module raised while importing
        raise UsageError(f"importing {name} failed: {type(err).__name__}: {_line(err)}") from None


def _import_file(path: Path):
    name = "edgecnn_user_" + re.sub(r"\W", "_", path.stem)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"{path} cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look modules up by name
    try:
        spec.loader.exec_module(module)
    except Exception as err:
        del sys.modules[name]
        raise UsageError(f"importing {path} failed: {type(err).__name__}: {_line(err)}") from None
    return module


def _close(name: str, candidates: Sequence[str]) -> str:
    matches = difflib.get_close_matches(name, candidates, n=3, cutoff=0.6)
    return f" (did you mean {', '.join(matches)}?)" if matches else ""


def _line(err: BaseException) -> str:
    text = str(err).strip()
    return (text.splitlines()[0] if text else repr(err))[:300]


def build(builder: Callable[..., Any], arguments: dict[str, Any], entry: str) -> nn.Module:
    try:
        model = builder(**arguments)
    except Exception as err:
        raise UsageError(f"{entry}(**{json.dumps(arguments)}) raised {type(err).__name__}: {_line(err)}") from None
    if not isinstance(model, nn.Module):
        raise UsageError(f"{entry} returned a {type(model).__name__}, not a torch.nn.Module")
    return model


def load_user_weights(model: nn.Module, path: Path, named: Optional[str] = None) -> WeightsRecord:
    """A state_dict file, or (`named`) one of the project's checkpoints of a model from elsewhere."""
    load_weights(model, load_state_dict(path), type(model).__name__, str(path))
    return WeightsRecord(
        f"{named}: checkpoints/{path.name}, trained by edgecnn" if named else f"state_dict {path.name}",
        True,
        kind=WeightsKind.PROJECT if named else WeightsKind.FILE,
        name=named or str(path),
        path=str(path.resolve()),
        sha256=sha256_of(path),
    )


def project_checkpoint(text: str):
    """The `WeightsSource` of a checkpoint the project trained of a model from elsewhere, or None."""
    from edgecnn.weights.sources import PROJECT, resolve

    if text not in PROJECT or ":" not in PROJECT[text][0].model:
        return None
    return resolve(text, PROJECT[text][0].model)


def weights_file(text: Optional[str], entry: str) -> tuple[Optional[Path], Optional[str]]:
    """What `--weights` names beside `--model MODULE:ATTR`: a state_dict file, or a checkpoint the project
    trained of that model (the file, and its name)."""
    from edgecnn.weights.sources import PROJECT, resolve

    if text is None:
        return None, None
    if text in PROJECT:
        return resolve(text, entry).path, text
    return Path(text), None


def output_width(model: nn.Module, resolution: int) -> int:
    """The number of classes, from one run on a normalised image; refuses an output that is not (1, classes)."""
    try:
        with torch.no_grad():
            out = model(torch.zeros(1, 3, resolution, resolution))
    except Exception as err:
        raise UsageError(
            f"the model fails on a (1, 3, {resolution}, {resolution}) image: {type(err).__name__}: {_line(err)}"
        ) from None
    if not isinstance(out, torch.Tensor):
        raise UsageError(f"the model returns a {type(out).__name__}; edgecnn needs one tensor of logits (N, classes)")
    if out.ndim != 2 or out.shape[0] != 1:
        raise UsageError(
            f"the model maps a (1, 3, {resolution}, {resolution}) image to {tuple(out.shape)}, not (1, classes) logits"
        )
    return int(out.shape[1])


def read_labels(path: Path) -> list[str]:
    try:
        labels = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"--labels {path}: {type(err).__name__}: {_line(err)}") from None
    if not labels:
        raise UsageError(f"--labels {path} holds no labels (one per line)")
    return labels


def check_normalisation(mean: Sequence[float], std: Sequence[float]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    if len(mean) != 3 or len(std) != 3:
        raise UsageError(f"--mean and --std take three values (R, G, B), got {len(mean)} and {len(std)}")
    if any(not 0 < s < 100 for s in std):
        raise UsageError(f"--std must be positive, got {list(std)}")
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


def default_name(attribute: str, arguments: dict[str, Any], resolution: int) -> str:
    """A safe variant id from what built the model: geffnet:create_model {"model_name": "mnasnet_100"} at 128
    px gives mnasnet_100_r128, my_net.py:TinyNet gives TinyNet_r128."""
    base = next((str(v) for v in arguments.values() if isinstance(v, str) and SAFE_ID.match(str(v))), None)
    base = base or attribute.rpartition(".")[2]
    return re.sub(r"[^A-Za-z0-9._-]", "_", base).lstrip("._-")[:100] + f"_r{resolution}"


def prepare(
    network: nn.Module,
    origin: ModelOrigin,
    *,
    resolution: int,
    name: Optional[str],
    mean: Sequence[float],
    std: Sequence[float],
    labels: Optional[list[str]],
    num_classes: Optional[int],
    weights: Optional[WeightsRecord] = None,
) -> UserModel:
    """Check a built model against what the user said of it, and describe it for the export."""
    if not isinstance(resolution, int) or isinstance(resolution, bool):
        raise UsageError(f"--resolution must be a whole number of pixels, got {resolution!r}")
    if not MIN_RESOLUTION <= resolution <= MAX_RESOLUTION:
        raise UsageError(f"--resolution must be in [{MIN_RESOLUTION}, {MAX_RESOLUTION}], got {resolution}")
    if name is not None and not SAFE_ID.match(name):
        raise UsageError(f"--name {name!r} is not a safe id (letters, digits, '.', '_', '-')")
    mean_, std_ = check_normalisation(mean, std)
    network.eval()
    width = output_width(network, resolution)
    if labels is not None and len(labels) != width:
        raise UsageError(f"the labels name {len(labels)} classes; the model has {width} outputs")
    if num_classes is not None and num_classes != width:
        raise UsageError(f"--num-classes {num_classes}, but the model has {width} outputs")
    if weights is None:  # nothing says whether they are trained: no int8 bound unless the user states one
        weights = WeightsRecord(
            f"as {origin.built_by} made them (not known to be trained: int8 is held to --int8-target only)",
            False,
            sha256=module_digest(network),
        )
    spec = UserModelSpec(
        name or default_name(type(network).__name__, {}, resolution), resolution, width, mean_, std_, labels
    )
    return UserModel(network, spec, origin, weights)


def rebuild(entry: str, arguments: dict[str, Any], weights: Optional[str] = None) -> nn.Module:
    """The model `--model MODULE:ATTR` names, built as an export builds it (same seed, same weights)."""
    builder, _ = import_entry(entry)
    torch.manual_seed(BUILD_SEED)
    network = build(builder, arguments, entry)
    path, named = weights_file(weights, entry)
    if path is not None:
        load_user_weights(network, path, named)
    return network.eval()


def from_entry(
    entry: str,
    arguments: dict[str, Any],
    *,
    resolution: int,
    name: Optional[str] = None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    labels: Optional[list[str]] = None,
    num_classes: Optional[int] = None,
    weights: Optional[str] = None,
) -> UserModel:
    """`--model MODULE:ATTR`: imported, called with `arguments`, given its weights (a file, or a checkpoint the
    project trained of it), checked."""
    builder, file_sha256 = import_entry(entry)
    torch.manual_seed(BUILD_SEED)  # a random initialisation is then the same each time the model is named
    network = build(builder, arguments, entry)
    path, named = weights_file(weights, entry)
    record = load_user_weights(network, path, named) if path is not None else None
    origin = ModelOrigin(entry, _qualified(network), arguments, file_sha256)
    attribute = entry.rpartition(":")[2]
    name = name if name is not None else default_name(attribute, arguments, resolution)
    return prepare(
        network,
        origin,
        resolution=resolution,
        name=name,
        mean=mean,
        std=std,
        labels=labels,
        num_classes=num_classes,
        weights=record,
    )


def from_module(
    network: nn.Module,
    *,
    resolution: int,
    name: Optional[str] = None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    labels: Optional[list[str]] = None,
) -> UserModel:
    """A module handed to `edgecnn.export`."""
    if not isinstance(network, nn.Module):
        raise UsageError(f"edgecnn.export takes a torch.nn.Module, got {type(network).__name__}")
    origin = ModelOrigin(f"python: {_qualified(network)}", _qualified(network))
    return prepare(
        network, origin, resolution=resolution, name=name, mean=mean, std=std, labels=labels, num_classes=None
    )


def _qualified(network: nn.Module) -> str:
    kind = type(network)
    return f"{kind.__module__}.{kind.__qualname__}"


def module_digest(network: nn.Module) -> str:
    """sha256 over the state_dict's names and values: what the weights recorded for a Python-API model are."""
    digest = hashlib.sha256()
    for key, value in network.state_dict().items():
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def raw_rgb(user: UserModel) -> RawRGBInput:
    """The user's network behind the normalisation they stated: raw RGB 0..255 in, as every artifact takes."""
    return RawRGBInput(user.network, user.spec.mean, user.spec.std).eval()


def matching_network(manifest: Manifest, root: Path, network: nn.Module, images: np.ndarray) -> nn.Module:
    """`network` (normalised input), once it is shown to compute what the export's reference program computes
    on `images` (uint8 NHWC): what the per-layer analyses need, since a program has no modules to name."""
    from edgecnn.weights.program import load_reference

    if manifest.reference is None:
        raise UsageError(f"{root} holds a model of the zoo; it needs no --model")
    reference = load_reference(root / manifest.reference.path)
    wrapped = RawRGBInput(network.eval(), tuple(manifest.mean), tuple(manifest.std)).eval()
    batch = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    with torch.no_grad():
        expected, got = reference(batch), wrapped(batch)
    if got.shape != expected.shape or not torch.allclose(got, expected, rtol=1e-4, atol=1e-5):
        raise UsageError(
            f"the model named does not compute what {root}'s reference program computes (largest difference "
            f"{(got - expected).abs().max().item() if got.shape == expected.shape else 'in shape'}); name the "
            f"model, arguments and weights it was exported with ({manifest.origin.built_by if manifest.origin else ''})"
        )
    return network.eval()
