"""Passes on the `torch.export` graph that put a network in the forms its int8 quantizes to, however written.

The quantizers annotate a fixed set of operator patterns; anything else stays float and breaks the int8
graph into pieces (or, with integer literals, crashes PT2E's calibration). Users write the same function in
many ways: `nn.SiLU`, `F.silu`, `x * torch.sigmoid(x)`; `nn.Hardswish`, `F.hardswish`, `x * F.relu6(x + 3) / 6`,
a TorchScript function; a head as `x.mean((2, 3))` or `nn.AdaptiveAvgPool2d(1)`. After `torch.export` these
are aten operators whatever the Python was, so each pass rewrites one operator form into the one that
quantizes:

- `silu(x)` -> `x * sigmoid(x)` (LiteRT keeps a native SiLU float);
- `hardsigmoid(x)` -> `hardtanh(x + 3, 0, 6) * (1/6)`, and `hardswish(x)` -> `x * hardsigmoid(x)` in that form
  (XNNPACK has no int8 HARD_SWISH in LiteRT; ExecuTorch's XNNPACK runs the native one in int8, so it keeps it);
- `relu6(x)` and `clamp(x, 0, 6)` -> `hardtanh(x, 0, 6)` (the ReLU6 the quantizers' patterns know);
- `x / c` -> `x * (1/c)` for a constant c (a divide stays float);
- in-place operators (`nn.SiLU(inplace=True)`, `x.sigmoid_()`) -> out-of-place, where nothing reads the input after;
- integer scalars in arithmetic -> float (an int literal made calibration's histogram fail on a Long tensor);
- `mean(x, (2, 3))` on an NCHW tensor -> `adaptive_avg_pool2d(x, 1)` (flattened unless keepdim): a MEAN stays
  float in LiteRT's int8, an average pool does not;
- for ExecuTorch (`split_as_slices`), a split or chunk -> one slice per part: its XNNPACK delegates slices but
  not `split_with_sizes`. (Merging MixNet's split, per-part depthwise convs and concat into one depthwise conv,
  each kernel zero-padded to the largest, computes the same but made its int8 TFLite 2x slower: XNNPACK's
  int8 9x9 depthwise is slow. Not done.)

Each new node carries the metadata of the node it replaces (its `nn_module_stack` above all), so per-layer
inspection and float units still name the user's own modules. Each computes exactly what it replaces
(tests/test_graph_passes.py runs both graphs).
"""

from __future__ import annotations

import operator
from collections import Counter
from typing import Any, Callable

import torch
from torch import fx

aten = torch.ops.aten

_ARITHMETIC = {aten.add.Tensor, aten.sub.Tensor, aten.mul.Tensor, aten.rsub.Scalar, aten.add.Scalar, aten.mul.Scalar}


def int8_forms(graph: fx.GraphModule, *, native_hardswish: bool = False, split_as_slices: bool = False) -> Counter:
    """Rewrite `graph` in place; returns how many operators each pass rewrote."""
    done: Counter = Counter()
    done["grad-mode region inlined"] = inline_grad_mode_regions(graph)
    done["in-place operator made out-of-place"] = out_of_place(graph)
    if split_as_slices:
        done["split as slices"] = splits_as_slices(graph)
    for node in list(graph.graph.nodes):
        if node.op != "call_function":
            continue
        rewrite = _rewrite_for(node, native_hardswish)
        if rewrite is None:
            continue
        name, build = rewrite
        with graph.graph.inserting_before(node):
            replacement = build(_Builder(graph.graph, node), *node.args)
        node.replace_all_uses_with(replacement)
        graph.graph.erase_node(node)
        done[name] += 1
    for node in graph.graph.nodes:  # integer literals last: the rewrites above write floats already
        if node.op == "call_function" and node.target in _ARITHMETIC:
            if any(isinstance(a, int) and not isinstance(a, bool) for a in node.args):
                node.args = tuple(float(a) if isinstance(a, int) and not isinstance(a, bool) else a for a in node.args)
                done["integer scalar as float"] += 1
    graph.graph.lint()
    graph.recompile()
    return done


_EXPORT_ROOT = "_export_root."
_IN_PLACE = {
    aten.silu_.default: aten.silu.default,
    aten.sigmoid_.default: aten.sigmoid.default,
    aten.hardswish_.default: aten.hardswish.default,
    aten.hardsigmoid_.default: aten.hardsigmoid.default,
    aten.clamp_.default: aten.clamp.default,
    aten.div_.Tensor: aten.div.Tensor,
    aten.mul_.Tensor: aten.mul.Tensor,
    aten.add_.Tensor: aten.add.Tensor,
}


def out_of_place(graph: fx.GraphModule) -> int:
    """`x.sigmoid_()`, `nn.SiLU(inplace=True)` and the like as their out-of-place operators (the quantizers
    match those only), where nothing reads the overwritten input afterwards."""
    order = {node: i for i, node in enumerate(graph.graph.nodes)}
    count = 0
    for node in graph.graph.nodes:
        if node.op != "call_function" or node.target not in _IN_PLACE or not isinstance(node.args[0], fx.Node):
            continue
        if all(order[user] <= order[node] for user in node.args[0].users if user is not node):
            node.target = _IN_PLACE[node.target]
            count += 1
    return count


def inline_grad_mode_regions(graph: fx.GraphModule) -> int:
    """Inline each `wrap_with_set_grad_enabled` region: torch.export wraps code run under `torch.no_grad()`
    (e.g. inside an autograd.Function's forward, as geffnet's memory-efficient activations are) in a
    subgraph that no quantizer annotates into. Inference computes the same without the grad mode."""
    wrap = torch.ops.higher_order.wrap_with_set_grad_enabled
    count = 0
    for node in list(graph.graph.nodes):
        if node.op != "call_function" or node.target is not wrap:
            continue
        _, region_attr, *operands = node.args
        region = getattr(graph, region_attr.target)
        if any(n.op == "get_attr" for n in region.graph.nodes):
            continue  # weights inside the region: left as it is (none of the activations seen has any)
        placeholders = [n for n in region.graph.nodes if n.op == "placeholder"]
        before = set(graph.graph.nodes)
        with graph.graph.inserting_before(node):
            outputs = graph.graph.graph_copy(region.graph, dict(zip(placeholders, operands)))
        for copied in [n for n in graph.graph.nodes if n not in before]:
            sources = copied.meta.get("source_fn_stack")
            if sources:  # the quantizers group nodes by this name: each region's copies must have their own
                copied.meta["source_fn_stack"] = [(copied.name, sources[-1][1])]
            # a region's own stack starts at the module that ran it (paths written from the export's root
            # wrapper): the region's caller supplies the levels above, which name the layer
            outer = dict(node.meta.get("nn_module_stack") or {})
            known = {path for path, _ in outer.values()}
            for key, (path, kind) in (copied.meta.get("nn_module_stack") or {}).items():
                path = path.removeprefix(_EXPORT_ROOT)
                if path not in known and path != _EXPORT_ROOT.rstrip("."):  # the root is the caller's too
                    outer[key] = (path, kind)
            if outer:
                copied.meta["nn_module_stack"] = outer
        outputs = outputs if isinstance(outputs, (list, tuple)) else (outputs,)
        for user in list(node.users):
            if user.target is not operator.getitem:
                raise ValueError(f"{node.name} is read other than by index: {user.format_node()}")
            user.replace_all_uses_with(outputs[user.args[1]])
            graph.graph.erase_node(user)
        graph.graph.erase_node(node)
        count += 1
    graph.graph.eliminate_dead_code()
    graph.delete_all_unused_submodules()
    return count


_SPLITS = {aten.split_with_sizes.default, aten.split.Tensor, aten.chunk.default}


def splits_as_slices(graph: fx.GraphModule) -> int:
    """Each split or chunk as one slice per part: ExecuTorch's XNNPACK delegates slices, not split_with_sizes
    (MixNet's mixed-kernel convs left 34 of them outside it)."""
    count = 0
    for split in list(graph.graph.nodes):
        if split.op != "call_function" or split.target not in _SPLITS:
            continue
        parts = [p for p in split.users if p.target is operator.getitem]
        shapes = split.meta.get("val")
        if len(parts) != len(split.users) or not shapes:
            continue
        dim = split.args[2] if len(split.args) > 2 else split.kwargs.get("dim", 0)
        starts = [0]
        for shape in shapes:
            starts.append(starts[-1] + int(shape.shape[dim]))
        for part in parts:
            index = part.args[1]
            with graph.graph.inserting_before(part):
                piece = _Builder(graph.graph, split)(
                    aten.slice.Tensor, split.args[0], dim, starts[index], starts[index + 1]
                )
            part.replace_all_uses_with(piece)
            graph.graph.erase_node(part)
        graph.graph.erase_node(split)
        count += 1
    return count


def _rewrite_for(node: fx.Node, native_hardswish: bool) -> "tuple[str, Callable[..., fx.Node]] | None":
    target = node.target
    if target == aten.silu.default:
        return "silu", lambda b, x: b(aten.mul.Tensor, x, b(aten.sigmoid.default, x))
    if target == aten.hardsigmoid.default:
        return "hardsigmoid", lambda b, x: _hard_sigmoid(b, x)
    if target == aten.hardswish.default and not native_hardswish:
        return "hardswish", lambda b, x: b(aten.mul.Tensor, x, _hard_sigmoid(b, x))
    if target == aten.relu6.default or (target == aten.clamp.default and _constant_args(node, 1, 2) == (0.0, 6.0)):
        return "relu6 as hardtanh(0, 6)", lambda b, x, *_: b(aten.hardtanh.default, x, 0.0, 6.0)
    if target == aten.div.Tensor and _is_number(node.args[1]) and node.args[1] != 0 and not node.kwargs:
        return "divide by a constant", lambda b, x, c: b(aten.mul.Tensor, x, 1.0 / float(c))
    if target == aten.mean.dim and _is_spatial_mean(node):
        keepdim = bool(node.args[2]) if len(node.args) > 2 else bool(node.kwargs.get("keepdim", False))
        return "spatial mean", lambda b, x, *_: _pooled(b, x, keepdim)
    return None


def _hard_sigmoid(b: "_Builder", x: fx.Node) -> fx.Node:
    shifted = b(aten.add.Tensor, x, 3.0)
    return b(aten.mul.Tensor, b(aten.hardtanh.default, shifted, 0.0, 6.0), 1.0 / 6.0)


def _pooled(b: "_Builder", x: fx.Node, keepdim: bool) -> fx.Node:
    pooled = b(aten.adaptive_avg_pool2d.default, x, [1, 1])
    return pooled if keepdim else b(aten.flatten.using_ints, pooled, 1, -1)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _constant_args(node: fx.Node, *positions: int) -> tuple:
    values: list[Any] = [node.args[i] if i < len(node.args) else None for i in positions]
    return tuple(float(v) if _is_number(v) else v for v in values)


def _is_spatial_mean(node: fx.Node) -> bool:
    x = node.args[0]
    value = x.meta.get("val") if isinstance(x, fx.Node) else None
    if value is None or value.dim() != 4 or len(node.args) < 2 or node.kwargs.get("dtype") is not None:
        return False
    dims = node.args[1]
    return (
        isinstance(dims, (list, tuple))
        and all(isinstance(d, int) for d in dims)
        and sorted(d % 4 for d in dims if isinstance(d, int)) == [2, 3]
    )


# The quantizers find add, mul and pool partitions by the Python function a node came from
# (`source_fn_stack`), not by its aten operator: a new node says which function it stands for.
_SOURCE_FN: dict[Any, Any] = {
    aten.add.Tensor: operator.add,
    aten.mul.Tensor: operator.mul,
    aten.sigmoid.default: torch.sigmoid,
    aten.hardtanh.default: torch.nn.functional.hardtanh,
    aten.adaptive_avg_pool2d.default: torch.nn.functional.adaptive_avg_pool2d,
    aten.flatten.using_ints: torch.flatten,
    aten.slice.Tensor: operator.getitem,
}


class _Builder:
    """Creates call_function nodes carrying the replaced node's metadata (its module path), the function they
    stand for, and their own shape (`val`)."""

    def __init__(self, graph: fx.Graph, replaced: fx.Node) -> None:
        self.graph = graph
        self.meta = {k: v for k, v in replaced.meta.items() if k not in ("val", "source_fn_stack", "torch_fn")}
        vals = [n.meta.get("val") for n in replaced.all_input_nodes]
        self.fake_mode = torch._guards.detect_fake_mode([v for v in vals if v is not None])

    def __call__(self, target: Any, *args: Any) -> fx.Node:
        node = self.graph.call_function(target, args)
        node.meta.update(self.meta)
        node.meta["source_fn_stack"] = [(node.name, _SOURCE_FN[target])]
        values = [a.meta.get("val") if isinstance(a, fx.Node) else a for a in args]
        if self.fake_mode is not None and all(v is not None for v in values):
            with self.fake_mode:
                node.meta["val"] = target(*values)
        return node


__all__ = ["int8_forms"]
