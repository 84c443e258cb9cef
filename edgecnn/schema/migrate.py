"""Manifests of an earlier edgecnn, read as today's: `edgecnn.manifest/2` kept each format's facts as free
JSON, with the bound's metric as a key of its own (`{"agreement": 0.99}`); /3 types them per format."""

from __future__ import annotations

from typing import Any, Optional

from edgecnn.schema.enums import Metric

V2 = "edgecnn.manifest/2"


def from_v2(raw: dict[str, Any], schema: str) -> dict[str, Any]:
    """`raw` (a parsed /2 manifest) as a /3 one: details typed per format, measurements as {metric, value}."""
    migrated = dict(raw, schema=schema)
    migrated["artifacts"] = [_artifact(a) for a in raw.get("artifacts", [])]
    migrated["refused"] = [_refusal(r) for r in raw.get("refused", [])]
    return migrated


def _artifact(record: Any) -> Any:
    if not isinstance(record, dict):
        return record  # the schema check that follows says what is wrong with it
    return dict(record, details=_details(record.get("format"), record.get("details", {})))


def _refusal(record: Any) -> Any:
    if not isinstance(record, dict):
        return record
    details = record.get("details") or None
    return dict(record, details=None if details is None else _details(record.get("format"), details))


def _details(format_name: Any, details: Any) -> Any:
    if not isinstance(details, dict):
        return details
    migrated = dict(details, format=format_name)
    migrated.pop("pure_int8", None)  # now a property of the float layers it names
    if isinstance(details.get("repair"), dict):
        migrated["repair"] = _repair(details["repair"])
    if "target" in details:  # an int8-mixed file: what it measured against the bound
        migrated["measured"] = _measured(migrated)
    return migrated


def _repair(repair: dict[str, Any]) -> dict[str, Any]:
    migrated = dict(repair)
    migrated["candidates"] = [_with_measured(c) for c in repair.get("candidates", [])]
    tuning = repair.get("fine_tuning")
    if isinstance(tuning, dict):
        tuning = _with_measured(tuning)
        if "why" in tuning:
            tuning["why_not"] = tuning.pop("why")
        migrated["fine_tuning"] = tuning
    final = repair.get("final")
    if isinstance(final, dict):
        migrated["final"] = {
            "measured": {"metric": final.get("metric"), "value": final.get("value")},
            "met": final.get("met"),
        }
    search = repair.get("float_units")
    if isinstance(search, dict):
        migrated["float_units"] = dict(
            search, most_sensitive=[_with_measured(u) for u in search.get("most_sensitive", [])]
        )
    return migrated


def _with_measured(record: Any) -> Any:
    if not isinstance(record, dict):
        return record
    migrated = dict(record)
    migrated["measured"] = _measured(migrated)
    return migrated


def _measured(record: dict[str, Any]) -> Optional[dict[str, Any]]:
    """Pops the one metric-named key of `record` as {metric, value}; None where it has none."""
    found = [m for m in Metric if m.value in record]
    if not found:
        return None
    return {"metric": found[0].value, "value": record.pop(found[0].value)}
