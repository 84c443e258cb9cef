"""The one way edgecnn opens a .tflite file in LiteRT (the interpreter, its tensors allocated), and the file's
own metadata entries."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np


def interpreter(
    path: Path, threads: Optional[int] = None, reference_kernels: bool = False, keep_all_tensors: bool = False
) -> Any:
    """A ready LiteRT interpreter for `path`, run as a phone runs it (XNNPACK, LiteRT's default delegate).

    `threads`: None lets LiteRT choose. `reference_kernels`: LiteRT's built-in kernels alone, without
    XNNPACK. `keep_all_tensors`: intermediate tensors stay readable after `invoke` (per-layer inspection)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES if reference_kernels else OpResolverType.AUTO
    opened = Interpreter(
        model_path=str(path),
        num_threads=threads,
        experimental_op_resolver_type=resolver,
        experimental_preserve_all_tensors=keep_all_tensors,
    )
    opened.allocate_tensors()
    return opened


def module_path(tensor_name: str) -> Optional[str]:
    """litert-torch's tensor name -> the backbone's module path; None for a name that carries none.

    Names are module stacks, `<wrapper>/<network class>_wrapped/<class>_<attribute>/...;<suffix>`: the
    attributes after the first two segments are the `named_modules()` path.
    """
    stack = tensor_name.split(";")[0].split("/")
    if len(stack) < 2 or "ChannelLastIOWrapper" not in stack[0]:
        return None
    attributes = []
    for segment in stack[2:]:
        attribute = segment.rpartition(".")[2].partition("_")[2]
        if not attribute:
            return None
        attributes.append(attribute)
    return ".".join(attributes) or None


def _metadata_entry(path: Path, name: str) -> tuple[Any, Optional[int]]:
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(path.read_bytes(), 0)
    index = next((i for i, m in enumerate(model.metadata or []) if m.name.decode() == name), None)
    return model, index


def write_metadata(path: Path, name: str, data: bytes) -> None:
    """Put `data` into the .tflite's own metadata, as the entry `name` (replacing one of that name), rewriting the
    file in place. Every buffer keeps a 16-byte aligned start, as LiteRT's converter writes them, so that
    kernels may read weights in place."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model, index = _metadata_entry(path, name)
    if any((b.offset or 0) > 1 for b in model.buffers or []):
        raise ValueError(f"{path.name} keeps its weights outside the flatbuffer; its metadata cannot be rewritten")
    entry = schema.MetadataT()
    entry.name = name
    entry.buffer = len(model.buffers)
    model.buffers = [_AlignedBuffer(b.data) for b in model.buffers] + [_AlignedBuffer(np.frombuffer(data, np.uint8))]
    entries = list(model.metadata or [])
    if index is not None:
        entries.pop(index)
    model.metadata = entries + [entry]
    builder = flatbuffers.Builder(path.stat().st_size + len(data) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    written = path.with_name(f".{path.name}.metadata")
    written.write_bytes(builder.Output())
    written.replace(path)


def read_metadata(path: Path, name: str) -> Optional[bytes]:
    """The bytes of the .tflite's metadata entry `name`, or None."""
    model, index = _metadata_entry(path, name)
    if index is None:
        return None
    return bytes(np.asarray(model.buffers[model.metadata[index].buffer].data, dtype=np.uint8))


class _AlignedBuffer:
    """A model buffer packed with its bytes starting on a 16-byte boundary (the generated BufferT packs them
    unaligned)."""

    ALIGNMENT = 16

    def __init__(self, data: Any) -> None:
        self.data = data

    def Pack(self, builder: Any) -> int:  # noqa: N802 (the flatbuffers object API's name)
        from ai_edge_litert import schema_py_generated as schema

        vector = None
        if self.data is not None and len(self.data):
            payload = np.asarray(self.data, dtype=np.uint8).tobytes()
            builder.StartVector(1, len(payload), self.ALIGNMENT)
            builder.head = builder.head - len(payload)
            builder.Bytes[builder.head : builder.head + len(payload)] = payload
            builder.vectorNumElems = len(payload)
            vector = builder.EndVector()
        schema.BufferStart(builder)
        if vector is not None:
            schema.BufferAddData(builder, vector)
        return schema.BufferEnd(builder)
