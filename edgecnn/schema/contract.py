"""What a model file must carry to be used right once it leaves its export folder: its labels, normalisation,
preprocessing, and input and output encoding. ONNX and Core ML keep these in their own metadata; a .tflite
keeps them in a metadata entry of the model and a .pte in a constant method, both named `CONTRACT_KEY`, as JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from edgecnn.schema.artifacts import TensorSpec
from edgecnn.schema.enums import Precision
from edgecnn.schema.inputs import Preprocessing
from edgecnn.schema.manifest import to_json
from edgecnn.schema.reading import json_object, parse_record
from edgecnn.util.errors import UsageError

CONTRACT_SCHEMA = "edgecnn.contract/1"
CONTRACT_KEY = "edgecnn_contract"


@dataclass(frozen=True)
class FileContract:
    schema: str
    variant: str
    precision: Precision
    labels: list[str]
    mean: list[float]  # the normalisation the float graphs hold inside: (x / 255 - mean) / std
    std: list[float]
    preprocessing: Preprocessing
    input: TensorSpec  # an int8 file's input encoding (the 0..255 -> code table) is in input.encoding
    output: TensorSpec
    edgecnn: str  # the version that wrote the file


def contract_text(contract: FileContract) -> str:
    return json.dumps(to_json(contract), separators=(",", ":"))


def parse_contract(text: str, where: str) -> FileContract:
    raw = json_object(text, where)
    if raw.get("schema") != CONTRACT_SCHEMA:
        raise UsageError(f"{where} has schema {raw.get('schema')!r}; this edgecnn reads {CONTRACT_SCHEMA!r}")
    return parse_record(FileContract, raw, where, CONTRACT_SCHEMA)
