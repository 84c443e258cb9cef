"""The int8-form passes on the torch.export graph: each computes what it replaces, keeps the module paths,
and leaves no operator the quantizers cannot annotate."""

from collections import Counter

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from edgecnn.passes.aten import int8_forms

pytestmark = pytest.mark.quick
aten = torch.ops.aten


class HardSwishFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x * (x + 3).clamp(0, 6) / 6

    @staticmethod
    def backward(ctx, grad):
        return grad


@torch.jit.script
def scripted_hard_sigmoid(x: torch.Tensor) -> torch.Tensor:
    return F.relu6(x + 3.0) / 6.0


class Act(nn.Module):
    def __init__(self, form: str) -> None:
        super().__init__()
        self.form = form
        self.module = {"nn.SiLU": nn.SiLU(), "nn.Hardswish": nn.Hardswish(), "nn.Hardsigmoid": nn.Hardsigmoid()}.get(form)

    def forward(self, x):
        if self.module is not None:
            return self.module(x)
        return {
            "F.silu": lambda: F.silu(x),
            "F.hardswish": lambda: F.hardswish(x),
            "written out": lambda: x * F.relu6(x + 3) / 6,
            "clamp": lambda: x * (x + 3).clamp(0, 6) / 6,
            "autograd.Function": lambda: HardSwishFunction.apply(x),
            "TorchScript": lambda: x * scripted_hard_sigmoid(x),
        }[self.form]()


class Net(nn.Module):
    def __init__(self, form: str, keepdim: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.act = Act(form)
        self.keepdim = keepdim
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        x = self.act(self.conv(x))
        pooled = x.mean((2, 3), keepdim=self.keepdim)
        return self.fc(pooled.flatten(1) if self.keepdim else pooled)


FORMS = ["nn.SiLU", "F.silu", "nn.Hardswish", "F.hardswish", "nn.Hardsigmoid", "written out", "clamp",
         "autograd.Function", "TorchScript"]
LEFT_FLOAT = {aten.silu.default, aten.hardswish.default, aten.hardsigmoid.default, aten.div.Tensor,
              aten.mean.dim, aten.clamp.default, aten.relu6.default,
              torch.ops.higher_order.wrap_with_set_grad_enabled}


@pytest.mark.parametrize("keepdim", [True, False])
@pytest.mark.parametrize("form", FORMS)
def test_each_form_becomes_what_quantizes_and_computes_the_same(form, keepdim):
    torch.manual_seed(0)
    model = Net(form, keepdim).eval()
    x = torch.randn(2, 3, 12, 12) * 3
    graph = torch.export.export(model, (x[:1],), strict=True).module()
    before = graph(x[:1])
    done = int8_forms(graph)
    targets = Counter(n.target for n in graph.graph.nodes if n.op == "call_function")
    assert not set(targets) & LEFT_FLOAT, targets
    assert done["spatial mean"] == 1
    assert aten.adaptive_avg_pool2d.default in targets
    after = graph(x[:1])
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-6)  # the same function up to float rounding
    torch.testing.assert_close(after, model(x[:1]), rtol=1e-5, atol=1e-6)


def test_every_new_operator_keeps_the_module_path_it_came_from():
    model = Net("autograd.Function", keepdim=False).eval()
    graph = torch.export.export(model, (torch.randn(1, 3, 8, 8),), strict=True).module()
    int8_forms(graph)
    paths = {}
    for node in graph.graph.nodes:
        if node.op == "call_function" and node.target in (aten.hardtanh.default, aten.add.Tensor):
            stack = node.meta["nn_module_stack"]
            paths[node.target] = list(stack.values())[-1][0]
    assert paths == {aten.hardtanh.default: "act", aten.add.Tensor: "act"}


def test_integer_literals_become_floats_and_an_exact_divide_stays_exact():
    class Literal(nn.Module):
        def forward(self, x):
            return (x + 3) * 2 / 4

    graph = torch.export.export(Literal(), (torch.randn(1, 2, 4, 4),), strict=True).module()
    x = torch.randn(1, 2, 4, 4)
    before = graph(x)
    int8_forms(graph)
    scalars = [a for n in graph.graph.nodes if n.op == "call_function" for a in n.args[1:]]
    assert scalars and all(isinstance(a, float) for a in scalars)
    assert torch.equal(graph(x), before)  # * 0.25 is exact where / 4 is



class MixedKernels(nn.Module):
    """A MixNet-style block written by hand: channels split unevenly, a depthwise kernel of its own per part,
    concatenated; then two halves by chunk, one read twice."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes = [4, 6, 6]
        self.mixed = nn.ModuleList(nn.Conv2d(c, c, k, 1, k // 2, groups=c) for c, k in zip(self.sizes, (3, 5, 7)))

    def forward(self, x):
        x = torch.cat([conv(part) for conv, part in zip(self.mixed, torch.split(x, self.sizes, 1))], 1)
        a, b = x.chunk(2, 1)
        return torch.cat([b, a], 1) + a.mean()


def test_splits_become_slices_computing_the_same_and_keeping_their_module_paths():
    torch.manual_seed(0)
    model = MixedKernels().eval()
    x = torch.randn(2, 16, 15, 15)
    graph = torch.export.export(model, (x,), strict=True).module()
    assert int8_forms(graph)["split as slices"] == 0  # LiteRT's int8 keeps its SPLIT
    done = int8_forms(graph, split_as_slices=True)
    assert done["split as slices"] == 2
    ops = Counter(n.target for n in graph.graph.nodes if n.op == "call_function")
    assert ops[aten.slice.Tensor] == 5 and not ops[aten.split_with_sizes.default] and not ops[aten.chunk.default]
    torch.testing.assert_close(graph(x), model(x), rtol=0, atol=0)


class PoolsAndNorms(nn.Module):
    """What the module rewrites did for the zoo, written so that torch.fx cannot trace it (a TorchScript
    activation): a padded max pool after a ReLU6, one after a plain conv, average pools with and without
    counted padding, a BatchNorm on a concatenation and one after a conv read twice."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.pool = nn.MaxPool2d(3, 2, 1)
        self.signed_pool = nn.MaxPool2d(3, 1, 1)
        self.branch = nn.AvgPool2d(3, 1, 1)
        self.exclusive = nn.AvgPool2d(3, 1, 1, count_include_pad=False)
        self.down = nn.AvgPool2d(2)
        self.norm = nn.BatchNorm2d(24)
        self.conv = nn.Conv2d(24, 8, 1)
        self.shared = nn.BatchNorm2d(8)
        for bn in (self.norm, self.shared):
            bn.running_mean.uniform_(-1, 1), bn.running_var.uniform_(0.5, 2), bn.weight.data.uniform_(-2, 2)

    def forward(self, x):
        y = self.pool(F.relu6(self.stem(x)))
        y = torch.cat([self.branch(y), self.exclusive(y), self.signed_pool(y - scripted_hard_sigmoid(y))], 1)
        z = self.conv(self.norm(y))
        return self.down(self.shared(z)) + self.down(z)


def test_pools_and_free_batchnorms_become_convs_and_pads_computing_the_same():
    torch.manual_seed(0)
    model = PoolsAndNorms().eval()
    x = torch.randn(2, 3, 16, 16) * 2
    graph = torch.export.export(model, (x[:1],), strict=True).module()
    done = int8_forms(graph)
    assert done["padded max pool as zero pad and pool"] == 1  # not the pool of a signed input
    assert done["average pool as depthwise conv"] == 3  # not the one that leaves its padding out of the mean
    assert done["BatchNorm after no conv as depthwise conv"] == 2  # the conv read twice cannot fold its norm
    ops = Counter(n.target for n in graph.graph.nodes if n.op == "call_function")
    assert ops[aten.batch_norm.default] == 0 and ops[aten.avg_pool2d.default] == 1
    assert ops[aten.constant_pad_nd.default] == 1 and ops[aten.max_pool2d.default] == 2
    torch.testing.assert_close(graph(x[:1]), model(x[:1]), rtol=1e-5, atol=1e-5)
    paths = {list(n.meta["nn_module_stack"].values())[-1][0] for n in graph.graph.nodes
             if n.op == "call_function" and n.target in (aten.conv2d.default, aten.constant_pad_nd.default)}
    assert {"pool", "branch", "down", "norm", "shared"} <= paths


def test_executorch_keeps_padded_max_pools_whole():
    model = PoolsAndNorms().eval()
    graph = torch.export.export(model, (torch.randn(1, 3, 16, 16),), strict=True).module()
    assert int8_forms(graph, pad_max_pools=False)["padded max pool as zero pad and pool"] == 0
