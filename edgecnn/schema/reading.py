"""Records read back from JSON: the one check of a file against the dataclasses that wrote it."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, TypeVar, Union

from edgecnn.util.errors import UsageError

Record = TypeVar("Record")
_UNION_MEMBER = re.compile(r"^[A-Z]")  # pydantic names a union's member in an error's location by its class


def json_object(text: str, where: Union[str, Path]) -> dict[str, Any]:
    """`text` parsed as a JSON object; one line if it is not JSON or not an object."""
    try:
        data = json.loads(text)
    except ValueError as err:
        raise UsageError(f"{where} is not valid JSON ({err.__class__.__name__})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{where} is not a JSON object")
    return data


def parse_record(record_type: type[Record], data: Any, where: Union[str, Path], schema: str) -> Record:
    """`data` (JSON-ready) as `record_type`, every field present with its type, enums by value; the first
    problem as one line otherwise."""
    from pydantic import TypeAdapter, ValidationError

    try:
        record: Record = TypeAdapter(record_type).validate_json(json.dumps(data), strict=True)
    except ValidationError as err:
        raise UsageError(f"{where} does not follow {schema}: {_first_problem(err.errors())}") from None
    return record


def _first_problem(errors: list[Any]) -> str:
    """Where and what, for the first error that matters. A union (a format's details) is tried member by
    member; the members whose literal tag (`format`) does not match fail on it, and their errors are noise
    beside those of the member that does match."""
    mismatched = {e["loc"][-2] for e in errors if e["type"] == "literal_error" and len(e["loc"]) >= 2}
    relevant = [e for e in errors if not mismatched.intersection(e["loc"])] or errors
    first = relevant[0]
    where = ".".join(str(p) for p in first["loc"] if not (isinstance(p, str) and _UNION_MEMBER.match(p)))
    return f"{where or 'top level'}: {first['msg']}"
