"""The gate for a reference program (`reference.pt2`): what `torch.export.load` may be handed from a folder.

`torch.export.load` is not safe on untrusted files: a weight or constant marked `use_pickle` goes through
`torch.load(weights_only=False)`, custom objects through `pickle.loads`, sample inputs fall back to a full
unpickle, and guard expressions and symbolic sizes become Python code or sympy expressions that are
evaluated. edgecnn writes its reference programs with none of these (batch 1, static shapes, raw tensors,
no sample inputs, aten operators only), so the gate accepts exactly that and refuses anything else before
torch sees the file. It reads the archive with zipfile and json only.
"""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path
from typing import Any, Callable

from edgecnn.util.errors import UsageError

# the files torch.export.save writes for one program named "model", under one archive folder
_ALLOWED = re.compile(
    r"(archive_format|archive_version|byteorder|\.data/version|\.data/serialization_id|models/model\.json"
    r"|data/weights/model_weights_config\.json|data/weights/weight_\d+"
    r"|data/constants/model_constants_config\.json|data/constants/tensor_\d+"
    r"|data/sample_inputs/model\.pt)"
)
_OPERATORS = re.compile(r"torch\.ops\.aten\.[A-Za-z0-9_]+\.[A-Za-z0-9_]+|_operator\.getitem")
_MAX_JSON_BYTES = 64 * 2**20


def check_program_archive(path: Path) -> None:
    """Refuse, in one line, a reference program that could run code or unpickle anything when loaded."""

    def refuse(why: str) -> UsageError:
        return UsageError(f"{path} is not a reference program edgecnn wrote: {why}; refused before loading it")

    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as err:
        raise refuse(f"not a zip archive ({err})") from None
    with archive:
        infos = archive.infolist()
        folders = {info.filename.split("/", 1)[0] for info in infos}
        if len(folders) != 1:
            raise refuse(f"{len(folders)} top-level folders, not one")
        prefix = folders.pop() + "/"
        for info in infos:
            name = info.filename[len(prefix) :]
            if not _ALLOWED.fullmatch(name):
                raise refuse(f"it holds {info.filename!r}")
            if name == "data/sample_inputs/model.pt" and info.file_size:
                raise refuse("it carries pickled sample inputs")

        def read_json(name: str) -> Any:
            info = archive.getinfo(prefix + name) if prefix + name in archive.namelist() else None
            if info is None:
                raise refuse(f"{name} is missing")
            if info.file_size > _MAX_JSON_BYTES:
                raise refuse(f"{name} is {info.file_size} bytes")
            try:
                return json.loads(archive.read(info))
            except ValueError:
                raise refuse(f"{name} is not JSON") from None

        for name, prefix_of_payload in (
            ("data/weights/model_weights_config.json", "weight_"),
            ("data/constants/model_constants_config.json", "tensor_"),
        ):
            config = read_json(name)
            entries = config.get("config") if isinstance(config, dict) else None
            if not isinstance(entries, dict):
                raise refuse(f"{name} has no config object")
            for key, entry in entries.items():
                if not isinstance(entry, dict) or entry.get("use_pickle") is not False:
                    raise refuse(f"{key!r} in {name} is pickled")
                if not str(entry.get("path_name", "")).startswith(prefix_of_payload):
                    raise refuse(f"{key!r} in {name} is not a raw tensor")
        _check_graph(read_json("models/model.json"), refuse)


def _check_graph(program: Any, refuse: Callable[[str], UsageError]) -> None:
    if not isinstance(program, dict) or not isinstance(program.get("graph_module"), dict):
        raise refuse("models/model.json holds no graph")
    if program.get("guards_code") or program.get("range_constraints"):
        raise refuse("it carries guard code or symbolic sizes (edgecnn writes static batch-1 programs)")
    graph = program["graph_module"].get("graph")
    if not isinstance(graph, dict) or not isinstance(graph.get("nodes"), list):
        raise refuse("models/model.json holds no graph nodes")
    for key in ("custom_obj_values", "sym_int_values", "sym_float_values", "sym_bool_values"):
        if graph.get(key):
            raise refuse(f"its graph carries {key}")
    for node in graph["nodes"]:
        target = node.get("target") if isinstance(node, dict) else None
        if not isinstance(target, str) or not _OPERATORS.fullmatch(target):
            raise refuse(f"its graph calls {str(target)[:80]!r}, not an aten operator")
    if _has_key(program, "expr_str"):
        raise refuse("it carries symbolic expressions")


def _has_key(value: Any, key: str) -> bool:
    if isinstance(value, dict):
        return key in value or any(_has_key(v, key) for v in value.values())
    if isinstance(value, list):
        return any(_has_key(v, key) for v in value)
    return False
