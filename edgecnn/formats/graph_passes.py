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
- a split along channels whose every part goes through its own convolution, concatenated back in order (a
  mixed-kernel depthwise conv as in MixNet, or a grouped pointwise conv written as pieces) -> one convolution:
  depthwise kernels zero-padded to the largest (odd, centred, so each tap reads the pixel it read before), or
  equal dense parts as one grouped conv. In int8 each split and concat requantizes and breaks the XNNPACK
  graph, and ExecuTorch's XNNPACK takes no `split_with_sizes`.

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


def int8_forms(graph: fx.GraphModule, *, native_hardswish: bool = False) -> Counter:
    """Rewrite `graph` in place; returns how many operators each pass rewrote."""
    done: Counter = Counter()
    done["grad-mode region inlined"] = inline_grad_mode_regions(graph)
    done["in-place operator made out-of-place"] = out_of_place(graph)
    done["split, convolutions and concat as one convolution"] = merge_split_convolutions(graph)
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


def merge_split_convolutions(graph: fx.GraphModule) -> int:
    """Each channel split whose parts each go through one conv2d, concatenated back in order, as one conv2d."""
    count = 0
    for split in list(graph.graph.nodes):
        found = _split_conv_concat(split) if split.op == "call_function" and split.target in _SPLITS else None
        if found is None:
            continue
        convs, concat = found
        merged = _merged_parameters(graph, convs)
        if merged is None:
            continue
        weight, bias, stride, padding, groups = merged
        first = convs[0]
        prefix = f"_merged_{first.name}"
        graph.register_buffer(f"{prefix}_weight", weight)
        if bias is not None:
            graph.register_buffer(f"{prefix}_bias", bias)
        with graph.graph.inserting_before(concat):
            weight_node = graph.graph.get_attr(f"{prefix}_weight")
            bias_node = graph.graph.get_attr(f"{prefix}_bias") if bias is not None else None
            conv = graph.graph.call_function(
                aten.conv2d.default, (split.args[0], weight_node, bias_node, stride, padding, [1, 1], groups)
            )
        conv.meta.update({k: v for k, v in first.meta.items() if k not in ("val", "source_fn_stack", "torch_fn")})
        named = _holder_stack(convs)
        if named is not None:  # named by the module that held the parts (e.g. MixNet's MixedConv2d)
            conv.meta["nn_module_stack"] = named
        sources = first.meta.get("source_fn_stack")
        if sources:
            conv.meta["source_fn_stack"] = [(conv.name, sources[-1][1])]
        fake_mode = torch._guards.detect_fake_mode([concat.meta.get("val")])
        if fake_mode is not None and split.args[0].meta.get("val") is not None:
            with fake_mode:
                weight_node.meta["val"] = fake_mode.from_tensor(weight)
                if bias_node is not None:
                    bias_node.meta["val"] = fake_mode.from_tensor(bias)
                conv.meta["val"] = torch.nn.functional.conv2d(
                    split.args[0].meta["val"], weight_node.meta["val"],
                    bias_node.meta["val"] if bias_node is not None else None, stride, padding, 1, groups,
                )
        concat.replace_all_uses_with(conv)
        graph.graph.erase_node(concat)
        for node in convs:
            graph.graph.erase_node(node)
        for part in list(split.users):
            graph.graph.erase_node(part)
        graph.graph.erase_node(split)
        count += 1
    if count:
        graph.graph.eliminate_dead_code()
        graph.delete_all_unused_submodules()
    return count


def _holder_stack(convs: list[fx.Node]) -> "dict | None":
    """The first part's module stack, ending at the deepest module that holds every part (their paths'
    common prefix: `blocks.1.0.conv_pw` for `.0` and `.1`)."""
    stacks = [list((c.meta.get("nn_module_stack") or {}).items()) for c in convs]
    if not all(stacks):
        return None
    paths = [stack[-1][1][0].split(".") for stack in stacks]
    common = []
    for names in zip(*paths):
        if len(set(names)) != 1:
            break
        common.append(names[0])
    holder = ".".join(common)
    kept = [(key, (path, kind)) for key, (path, kind) in stacks[0] if len(path) <= len(holder)]
    if kept and kept[-1][1][0] != holder:  # not called as a module (a ModuleList): named by its path
        kept.append((f"{kept[-1][0]}.parts", (holder, stacks[0][-1][1][1])))
    return dict(kept)


def _split_conv_concat(split: fx.Node) -> "tuple[list[fx.Node], fx.Node] | None":
    """(the convs in order, the concat) when `split` cuts NCHW channels into parts, each read by one conv2d
    only, whose outputs are read by one channel concat only, in the same order."""
    x = split.args[0]
    value = x.meta.get("val") if isinstance(x, fx.Node) else None
    dim = split.args[2] if len(split.args) > 2 else split.kwargs.get("dim", 0)
    if value is None or value.dim() != 4 or dim % 4 != 1:
        return None
    parts = list(split.users)
    if not parts or any(p.target is not operator.getitem or len(p.users) != 1 for p in parts):
        return None
    parts.sort(key=lambda p: p.args[1])
    if [p.args[1] for p in parts] != list(range(len(split.meta.get("val") or parts))):
        return None  # a part nothing reads
    convs = [next(iter(p.users)) for p in parts]
    if any(c.target != aten.conv2d.default or c.args[0] is not p or len(c.users) != 1 for c, p in zip(convs, parts)):
        return None
    concat = next(iter(convs[0].users))
    concat_dim = concat.args[1] if len(concat.args) > 1 else concat.kwargs.get("dim", 0)
    if concat.target != aten.cat.default or concat_dim % 4 != 1 or list(concat.args[0]) != convs:
        return None
    return convs, concat


def _conv_arguments(conv: fx.Node) -> "tuple[Any, ...] | None":
    """(weight, bias, stride, padding, dilation, groups) of an aten.conv2d node, weights as tensors."""
    defaults = [None, None, [1, 1], [0, 0], [1, 1], 1]
    args = list(conv.args[1:]) + defaults[len(conv.args) - 1:]
    weight_node, bias_node = args[0], args[1]
    if weight_node is None or weight_node.op != "get_attr" or (bias_node is not None and bias_node.op != "get_attr"):
        return None
    owner = weight_node.graph.owning_module
    pair = lambda v: [v, v] if isinstance(v, int) else list(v)  # noqa: E731
    weight = _attribute(owner, weight_node.target)
    bias = _attribute(owner, bias_node.target) if bias_node is not None else None
    return weight, bias, pair(args[2]), pair(args[3]), pair(args[4]), args[5]


def _attribute(module: torch.nn.Module, target: str) -> torch.Tensor:
    for part in target.split("."):
        module = getattr(module, part)
    return module.detach()


def _merged_parameters(graph: fx.GraphModule, convs: list[fx.Node]):
    """One conv's (weight, bias, stride, padding, groups) computing what the parts compute, or None."""
    parts = [_conv_arguments(c) for c in convs]
    if any(p is None for p in parts):
        return None
    weights = [p[0] for p in parts]
    strides, dilations = {tuple(p[2]) for p in parts}, {tuple(p[4]) for p in parts}
    if len(strides) != 1 or dilations != {(1, 1)}:
        return None
    inputs = [c.args[0].meta["val"].shape[1] for c in convs]
    biases = [p[1] for p in parts]
    if any(b is None for b in biases) and not all(b is None for b in biases):
        biases = [b if b is not None else torch.zeros(w.shape[0]) for b, w in zip(biases, weights)]
    bias = torch.cat(biases) if biases[0] is not None else None
    depthwise = all(g == c and w.shape[:2] == (c, 1) for (_, _, _, _, _, g), c, w in zip(parts, inputs, weights))
    if depthwise:
        kernels = [w.shape[2] for w in weights]
        centred = all(w.shape[2] == w.shape[3] and w.shape[2] % 2 == 1 and p[3] == [w.shape[2] // 2] * 2
                      for w, p in zip(weights, parts))
        if not centred:
            return None
        size = max(kernels)
        padded = [torch.nn.functional.pad(w, [(size - w.shape[2]) // 2] * 4) for w in weights]
        return torch.cat(padded), bias, list(strides.pop()), [size // 2] * 2, sum(inputs)
    same = {(tuple(w.shape), tuple(p[3]), p[5]) for w, p in zip(weights, parts)}
    if len(same) != 1 or parts[0][5] != 1 or len(set(inputs)) != 1:
        return None
    return torch.cat(weights), bias, list(strides.pop()), parts[0][3], len(convs)


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
