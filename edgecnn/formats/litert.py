"""The one way edgecnn opens a .tflite file in LiteRT: the interpreter, its tensors allocated."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional


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
