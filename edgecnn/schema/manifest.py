"""The manifest: the contract between an export folder and everything downstream.

Its schema is these dataclasses. The export pipeline writes them (`write_manifest`); `open_export` is the
one gate through which anything reads an export folder back (validate, bench, classify, sweep,
android-assets, the model card). An export folder is untrusted input, since people hand them around. So the gate
refuses, before any work and in one line, a manifest that does not parse into the schema, a variant id
that is not a safe file name, and any path it names (artifacts, labels) that is absolute, climbs out
with `..`, or resolves outside the folder through a symlink. This holds even when the file outside is a
valid artifact whose sha256 matches. Only then are the artifacts' hashes checked.

Two recorded paths are deliberately outside the folder: the weights file and the calibration folder the
export was made from. They are provenance of the export's inputs, not part of it. They are read only to
rebuild the PyTorch reference, through the same weights-only loader and sha256 check a `--weights` file
gets.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path, PurePosixPath
from typing import Any, Optional, Union

from edgecnn.schema import migrate
from edgecnn.schema.artifacts import ArtifactRecord, Refusal, sha256_of
from edgecnn.schema.enums import WeightsKind
from edgecnn.schema.inputs import CalibrationRecord, Preprocessing
from edgecnn.schema.parity import CheckStatus, Limits, Parity
from edgecnn.schema.program import check_program_archive
from edgecnn.schema.reading import json_object, parse_record
from edgecnn.util import console
from edgecnn.util.errors import UsageError

MANIFEST_SCHEMA = "edgecnn.manifest/3"
MANIFEST_FILE = "manifest.json"
LABELS_FILE = "labels.txt"
# a variant id names folders and files (export/<id>, the app's models/<id>/): letters, digits, . _ -
SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass(frozen=True)
class WeightsRecord:
    source: str  # in words, for reports
    trained: bool
    kind: Optional[WeightsKind] = None  # None: random initialisation
    name: Optional[str] = None  # what --weights said
    path: Optional[str] = None  # the file read (absolute): provenance, outside the export folder
    sha256: Optional[str] = None
    builder_options: dict[str, Any] = field(default_factory=dict)
    imagenet_classes: bool = False
    batchnorm: Optional[str] = None  # untrained: how BatchNorm statistics were made


@dataclass(frozen=True)
class ModelOrigin:
    """Where a model edgecnn does not define came from (`export --model MODULE:ATTR`, or the Python API)."""

    built_by: str  # "MODULE:ATTR" as the user gave it, or "python: <class>" for a module handed to edgecnn.export
    class_name: str  # the nn.Module's qualified class name
    arguments: dict[str, Any] = field(default_factory=dict)  # --model-args
    module_file_sha256: Optional[str] = None  # MODULE given as a .py file


@dataclass(frozen=True)
class BatchNormStatistics:
    """The BatchNorm statistics an untrained export re-estimated on its calibration images, kept in the folder
    (tensors only, read with weights_only) so that its reference is rebuilt in a second, not re-estimated."""

    path: str
    sha256: str


@dataclass(frozen=True)
class ReferenceProgram:
    """The PyTorch reference of a model edgecnn does not define, kept in the export folder as a torch.export
    program (raw RGB 0..255, batch 1 -> logits). The gate checks that it loads without unpickling anything
    and without running code written in the folder (`schema.program`)."""

    path: str
    sha256: str


@dataclass(frozen=True)
class ParityRecord:
    """What the export's own check found for one artifact (the full figures are in the validation report)."""

    status: CheckStatus
    parity: Optional[Parity] = None
    limits: Optional[Limits] = None
    reason: str = ""


@dataclass(frozen=True)
class Manifest:
    schema: str
    variant: str
    model: str
    family: str
    alpha: float
    resolution: int
    num_classes: int
    mean: list[float]
    std: list[float]
    normalization: str
    preprocessing: Preprocessing
    weights: WeightsRecord
    labels: str
    artifacts: list[ArtifactRecord]
    calibration: CalibrationRecord
    created_with: dict[str, str]
    dataset: Optional[str] = None  # what it was trained on, if edgecnn knows the dataset
    parity: dict[str, ParityRecord] = field(default_factory=dict)
    refused: list[Refusal] = field(default_factory=list)  # precisions a format could not produce, and why
    origin: Optional[ModelOrigin] = None  # None: a model of edgecnn's zoo, rebuilt from `model` and `alpha`
    reference: Optional[ReferenceProgram] = None  # the PyTorch reference of a model from outside the zoo
    batchnorm_statistics: Optional[BatchNormStatistics] = None  # untrained zoo exports

    @property
    def crop_fraction(self) -> float:
        return self.preprocessing.crop_fraction

    def artifact(self, path: str) -> ArtifactRecord:
        return next(a for a in self.artifacts if a.path == path)


def to_json(record: Any) -> Any:
    """A dataclass record as JSON-ready data (enums by value)."""

    def convert(value: Any) -> Any:
        if isinstance(value, Enum):
            return value.value
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [convert(v) for v in value]
        return value

    return convert(asdict(record))


def write_manifest(manifest: Manifest, folder: Path) -> Path:
    path = folder / MANIFEST_FILE
    path.write_text(json.dumps(to_json(manifest), indent=1) + "\n")
    return path


def parse_manifest(text: str, path: Path) -> Manifest:
    """The manifest's JSON checked against the dataclasses above: every field present with its type."""
    raw = json_object(text, path)
    schema = raw.get("schema")
    if schema == migrate.V2:
        console.say(
            f"[edgecnn] note: {path} was written by an earlier edgecnn ({migrate.V2}); read as "
            f"{MANIFEST_SCHEMA} (export again to update the file)"
        )
        raw = migrate.from_v2(raw, MANIFEST_SCHEMA)
    elif schema != MANIFEST_SCHEMA:
        raise UsageError(f"{path} has schema {schema!r}; this edgecnn reads {MANIFEST_SCHEMA!r} (re-export it)")
    return parse_record(Manifest, raw, path, MANIFEST_SCHEMA)


def inside(root: Path, relative: str, what: str) -> Path:
    """`root / relative`, refused unless it stays inside `root` as written and once symlinks are resolved."""
    pure = PurePosixPath(relative)
    if not relative or pure.is_absolute() or Path(relative).is_absolute() or "\\" in relative:
        raise UsageError(f"{root / MANIFEST_FILE}: {what} {relative!r} is not a relative path inside the export")
    if ".." in pure.parts:
        raise UsageError(f"{root / MANIFEST_FILE}: {what} {relative!r} leads out of the export folder")
    target = root / relative
    real_root = root.resolve()
    if not target.resolve().is_relative_to(real_root):
        raise UsageError(
            f"{root / MANIFEST_FILE}: {what} {relative!r} is a symlink that leads out of the export "
            f"folder (to {target.resolve()})"
        )
    if target.is_dir():  # a package folder (.mlpackage): nothing inside may lead out either
        for entry in target.rglob("*"):
            if entry.is_symlink() and not entry.resolve().is_relative_to(real_root):
                raise UsageError(
                    f"{root / MANIFEST_FILE}: {what} {relative!r} holds a symlink that leads out of "
                    f"the export folder ({entry.relative_to(root)})"
                )
    return target


def _kept_file(root: Path, kept: Union[ReferenceProgram, BatchNormStatistics], what: str) -> Path:
    """A file the reference is rebuilt from, inside the folder and as it was at export."""
    target = inside(root, kept.path, what)
    if not target.is_file():
        raise UsageError(f"{target} is listed in the manifest but missing")
    if sha256_of(target) != kept.sha256:
        raise UsageError(f"{target} has changed since export: its sha256 no longer matches the manifest")
    return target


def open_export(root: Path) -> Manifest:
    """The manifest of an export folder, after the gate: schema, safe names and paths, then every hash."""
    if not root.exists():
        raise UsageError(f"export folder not found: {root}")
    if not root.is_dir():
        beside = root.parent / MANIFEST_FILE
        hint = f": give the export folder it is in, {root.parent}" if beside.is_file() else ""
        raise UsageError(f"{root} is a file; edgecnn reads an export folder (holding {MANIFEST_FILE}){hint}")
    path = root / MANIFEST_FILE
    if path.is_symlink() or not path.is_file():
        raise UsageError(
            f"{root} is not an edgecnn export: it has no {MANIFEST_FILE}"
            + (" (only a symlink to one)" if path.is_symlink() else "")
        )
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not valid JSON (not UTF-8)") from None
    manifest = parse_manifest(text, path)
    if not SAFE_ID.match(manifest.variant):
        raise UsageError(
            f"{path}: variant id {manifest.variant!r} is not a safe file name "
            "(letters, digits, '.', '_', '-'; starting with a letter or digit)"
        )
    files = [(a.path, "artifact") for a in manifest.artifacts] + [(manifest.labels, "labels file")]
    targets = [inside(root, relative, what) for relative, what in files]  # every path, before any hash
    if manifest.reference is not None:
        check_program_archive(_kept_file(root, manifest.reference, "reference program"))
    elif manifest.origin is not None:
        raise UsageError(f"{path}: a model from outside the zoo ({manifest.origin.built_by}) but no reference program")
    if manifest.batchnorm_statistics is not None:
        _kept_file(root, manifest.batchnorm_statistics, "BatchNorm statistics")
    for target, artifact in zip(targets, manifest.artifacts):
        if not target.exists():
            raise UsageError(f"{target} is listed in the manifest but missing")
        if sha256_of(target) != artifact.sha256:
            raise UsageError(f"{target} has changed since export: its sha256 no longer matches the manifest")
    if not targets[-1].is_file():
        raise UsageError(f"{targets[-1]} is listed in the manifest but missing")
    return manifest


def read_labels(root: Path, manifest: Manifest) -> list[str]:
    """The export's class names (the path was checked by `open_export`)."""
    labels = (root / manifest.labels).read_text(encoding="utf-8").splitlines()
    if len(labels) != manifest.num_classes:
        raise UsageError(
            f"{root / manifest.labels} has {len(labels)} labels; the manifest says {manifest.num_classes} classes"
        )
    return labels


def manifest_sha256(root: Path) -> Optional[str]:
    path = root / MANIFEST_FILE
    return sha256_of(path) if path.is_file() else None


__all__ = [
    "MANIFEST_SCHEMA",
    "Manifest",
    "WeightsRecord",
    "ModelOrigin",
    "ReferenceProgram",
    "ParityRecord",
    "open_export",
    "write_manifest",
    "read_labels",
    "to_json",
    "inside",
    "manifest_sha256",
]
