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
- a padded max pool on a nonnegative input -> a zero pad and an unpadded pool (LiteRT lowers the padded pool
  to PADV2 with -inf, no XNNPACK operator);
- an average pool that counts its padding -> a depthwise conv with weights 1/k^2 (int8 AVERAGE_POOL_2D is no
  XNNPACK operator in LiteRT);
- a BatchNorm no conv feeds alone -> a 1x1 depthwise conv (the quantizers fold a BatchNorm only into such
  a conv, and leave any other float);
- for ExecuTorch (`split_as_slices`), a split or chunk -> one slice per part: its XNNPACK delegates slices but
  not `split_with_sizes`. (Merging MixNet's split, per-part depthwise convs and concat into one depthwise conv,
  each kernel zero-padded to the largest, computes the same but made its int8 TFLite 2x slower: XNNPACK's
  int8 9x9 depthwise is slow. Not done.)

The float graphs get the pool rewrites their converter needs (`fp32_forms`).

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


def int8_forms(
    graph: fx.GraphModule,
    *,
    native_hardswish: bool = False,
    split_as_slices: bool = False,
    pad_max_pools: bool = True,
) -> Counter:
    """Rewrite `graph` in place; returns how many operators each pass rewrote. `pad_max_pools=False` keeps
    padded max pools whole, for a converter that hands them to XNNPACK as they are (ExecuTorch)."""
    done: Counter = Counter()
    done["grad-mode region inlined"] = inline_grad_mode_regions(graph)
    done["in-place operator made out-of-place"] = out_of_place(graph)
    if split_as_slices:
        done["split as slices"] = splits_as_slices(graph)
    if pad_max_pools:
        done["padded max pool as zero pad and pool"] = zero_padded_max_pools(graph)
    done["average pool as depthwise conv"] = average_pools_as_depthwise_convs(graph)
    done["BatchNorm after no conv as depthwise conv"] = free_batchnorms_as_depthwise_convs(graph)
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


def fp32_forms(graph: fx.GraphModule, *, pad_max_pools: bool = False, average_pools_as_convs: bool = False) -> Counter:
    """The float graph's rewrites, in place: padded max pools on nonnegative values as a zero pad and a pool
    (LiteRT's PADV2 with -inf is no XNNPACK operator); padded average pools that count their padding as
    depthwise convs (ExecuTorch's XNNPACK leaves padding out of an average, so it kept such a pool outside the
    delegate)."""
    done: Counter = Counter()
    if pad_max_pools:
        done["padded max pool as zero pad and pool"] = zero_padded_max_pools(graph)
    if average_pools_as_convs:
        done["average pool as depthwise conv"] = average_pools_as_depthwise_convs(graph, padded_only=True)
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


def _shape(node: Any) -> "torch.Size | None":
    value = node.meta.get("val") if isinstance(node, fx.Node) else None
    return value.shape if isinstance(value, torch.Tensor) else None


def _constant(graph: fx.GraphModule, name: str, value: torch.Tensor, before: fx.Node) -> fx.Node:
    """`value` as a buffer of the graph, read by a get_attr node placed before `before`."""
    graph.register_buffer(name, value)
    with graph.graph.inserting_before(before):
        node = graph.graph.get_attr(name)
    fake_mode = torch._guards.detect_fake_mode([n.meta.get("val") for n in before.all_input_nodes])
    if fake_mode is not None:
        with fake_mode:
            node.meta["val"] = torch.empty_like(value)
    return node


def _depthwise_conv(
    graph: fx.GraphModule, node: fx.Node, x: fx.Node, weight: torch.Tensor, bias: "torch.Tensor | None", *conv: Any
) -> fx.Node:
    """conv2d(x, weight, bias, stride, padding, dilation, groups) in place of `node`, with its metadata."""
    prefix = f"_edgecnn_{node.name}"
    w = _constant(graph, f"{prefix}_weight", weight, node)
    b = _constant(graph, f"{prefix}_bias", bias, node) if bias is not None else None
    with graph.graph.inserting_before(node):
        return _Builder(graph.graph, node)(aten.conv2d.default, x, w, b, *conv)


def average_pool_weight(kernel: "list[int] | tuple[int, int]", channels: int) -> torch.Tensor:
    """The depthwise conv weight an average pool (counting its padding) is: 1/k^2 everywhere."""
    return torch.full((channels, 1, *kernel), 1.0 / (kernel[0] * kernel[1]))


def batchnorm_as_conv(
    gamma: "torch.Tensor | None", beta: "torch.Tensor | None", mean: torch.Tensor, var: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The 1x1 depthwise conv (weight, bias) an eval-mode BatchNorm is."""
    inverse = torch.rsqrt(var.detach().float() + eps)
    weight = gamma.detach().float() if gamma is not None else torch.ones_like(inverse)
    bias = beta.detach().float() if beta is not None else torch.zeros_like(inverse)
    # in this order of operations the weights round as the zoo's module rewrite rounded them before, so
    # DenseNet's int8 files are the files they were
    return (weight * inverse).reshape(-1, 1, 1, 1), bias - mean.detach().float() * weight * inverse


def average_pools_as_depthwise_convs(graph: fx.GraphModule, padded_only: bool = False) -> int:
    """An average pool that counts its padding as a depthwise conv with weights 1/k^2: LiteRT's int8
    AVERAGE_POOL_2D is not an XNNPACK operator, and int8 holds 1/k^2 exactly (per-channel scale).
    `padded_only`: only pools with padding (a float pool without is an XNNPACK operator as it is)."""
    count = 0
    for node in list(graph.graph.nodes):
        if node.op != "call_function" or node.target != aten.avg_pool2d.default:
            continue
        x, kernel, *rest = node.args
        stride, padding, ceil_mode, include_pad, divisor = (list(rest) + [[], 0, False, True, None][len(rest) :])[:5]
        shape = _shape(x)
        if shape is None or len(shape) != 4 or ceil_mode or not include_pad or divisor is not None:
            continue
        if padded_only and _two(padding) == [0, 0]:
            continue
        kernel = _two(kernel)
        stride = _two(stride) if stride else kernel  # avg_pool2d's stride defaults to its kernel
        channels = int(shape[1])
        weight = average_pool_weight(kernel, channels)
        conv = _depthwise_conv(graph, node, x, weight, None, stride, _two(padding), [1, 1], channels)
        node.replace_all_uses_with(conv)
        graph.graph.erase_node(node)
        count += 1
    return count


_CONV = aten.conv2d.default


def free_batchnorms_as_depthwise_convs(graph: fx.GraphModule) -> int:
    """A BatchNorm that follows no conv it could be folded into (DenseNet's, on each concatenation) as a 1x1
    depthwise conv: the quantizers leave such a BatchNorm float, and quantize a conv like any other."""
    count = 0
    for node in list(graph.graph.nodes):
        if node.op != "call_function" or node.target != aten.batch_norm.default:
            continue
        x, weight, bias, mean, var, training, _, eps = node.args[:8]
        folds = isinstance(x, fx.Node) and x.target == _CONV and len(x.users) == 1
        shape = _shape(x)
        if training or folds or shape is None or len(shape) != 4:
            continue
        gamma, beta, running_mean, running_var = (_attribute(graph, n) for n in (weight, bias, mean, var))
        if running_mean is None or running_var is None:
            continue
        weight_1x1, shift = batchnorm_as_conv(gamma, beta, running_mean, running_var, float(eps))
        conv = _depthwise_conv(graph, node, x, weight_1x1, shift, [1, 1], [0, 0], [1, 1], int(shape[1]))
        node.replace_all_uses_with(conv)
        graph.graph.erase_node(node)
        count += 1
    graph.graph.eliminate_dead_code()
    return count


def _attribute(graph: fx.GraphModule, node: Any) -> "torch.Tensor | None":
    if not isinstance(node, fx.Node) or node.op != "get_attr":
        return None
    value = operator.attrgetter(str(node.target))(graph)
    return value.detach().clone() if isinstance(value, torch.Tensor) else None


# operators whose output is never negative, and those that keep a nonnegative input nonnegative
_NONNEGATIVE = {aten.relu.default, aten.relu6.default, aten.sigmoid.default}
_KEEPS_SIGN = {aten.max_pool2d.default, aten.dropout.default, aten.clone.default, aten.contiguous.default}


def _nonnegative(node: Any) -> bool:
    if not isinstance(node, fx.Node) or node.op != "call_function":
        return False
    if node.target in _NONNEGATIVE:
        return True
    if node.target in (aten.hardtanh.default, aten.clamp.default):
        low = node.args[1] if len(node.args) > 1 else (-1.0 if node.target == aten.hardtanh.default else None)
        return _is_number(low) and float(low) >= 0
    if node.target in _KEEPS_SIGN:
        return _nonnegative(node.args[0])
    if node.target in (aten.cat.default, aten.concat.default):
        return all(_nonnegative(n) for n in node.args[0])
    return False


def zero_padded_max_pools(graph: fx.GraphModule) -> int:
    """A padded max pool on a nonnegative input as a zero pad and an unpadded pool: the same maxima, and
    LiteRT lowers the padded pool to a PADV2 with -inf, which XNNPACK does not take (the ResNets' stem
    pool was the second piece of every such model)."""
    count = 0
    for node in list(graph.graph.nodes):
        if node.op != "call_function" or node.target != aten.max_pool2d.default:
            continue
        x, kernel, *rest = node.args
        stride, padding, dilation, ceil_mode = (list(rest) + [[], 0, 1, False][len(rest) :])[:4]
        pad = _two(padding)
        if ceil_mode or pad == [0, 0] or not _nonnegative(x):
            continue
        b = _Builder(graph.graph, node)
        with graph.graph.inserting_before(node):
            padded = b(aten.constant_pad_nd.default, x, [pad[1], pad[1], pad[0], pad[0]], 0.0)
            pooled = b(aten.max_pool2d.default, padded, kernel, stride or kernel, [0, 0], dilation)
        node.replace_all_uses_with(pooled)
        graph.graph.erase_node(node)
        count += 1
    return count


def _two(value: Any) -> list[int]:
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    return [int(values[0]), int(values[-1])]


def module_path_of(node: fx.Node) -> "str | None":
    """The innermost module a node of an exported graph ran in, by its path in the exported model."""
    stack = node.meta.get("nn_module_stack")
    return list(stack.values())[-1][0].removeprefix(_EXPORT_ROOT) if stack else None


def batchnorms_after_convs(model: torch.nn.Module, sample: torch.Tensor) -> dict[str, str]:
    """conv module path -> the path of the BatchNorm that alone reads it, read off the `torch.export` graph:
    for a model torch.fx cannot trace (the quantizers fold these pairs into one conv all the same)."""
    graph = torch.export.export(model, (sample,), strict=True).graph
    pairs = {}
    for node in graph.nodes:
        if node.op == "call_function" and node.target == _CONV and len(node.users) == 1:
            user = next(iter(node.users))
            conv, norm = module_path_of(node), module_path_of(user)
            if user.target == aten.batch_norm.default and conv and norm and conv != norm:
                pairs[conv] = norm
    return pairs


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
    aten.conv2d.default: torch.nn.functional.conv2d,
    aten.constant_pad_nd.default: torch.nn.functional.pad,
    aten.max_pool2d.default: torch.nn.functional.max_pool2d,
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
        known = all(a.meta.get("val") is not None for a in args if isinstance(a, fx.Node))
        if self.fake_mode is not None and known:  # an absent bias (None) is an argument like any other
            with self.fake_mode:
                node.meta["val"] = target(*values)
        return node


__all__ = ["fp32_forms", "int8_forms"]
