"""Execute a saved Core ML ML program with PyTorch CPU kernels, where Core ML itself cannot run.

coremltools converts and saves on Linux but predicts only on macOS. To check the numbers of a saved
.mlpackage anyway, this loads its program (operations in order, weights as arrays) and runs each
operation with the equivalent PyTorch function, rounding every fp16 result to fp16 as the device stores
it. An operation it does not know is an error when the program is loaded, never a silent pass.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F


class UnsupportedOperation(RuntimeError):
    pass


def _ints(value: Any) -> list[int]:
    return [int(v) for v in np.atleast_1d(np.asarray(value))]


def _pool_padding(x: torch.Tensor, args: dict) -> tuple[list[int], list[int], list[int]]:
    """Explicit padding for pools and convs: MIL pads are [top, bottom, left, right] for 2-D."""
    pad_type = str(args.get("pad_type", "valid"))
    kernel = args["kernel"]
    strides = _ints(args.get("strides", [1] * len(kernel)))
    dilations = _ints(args.get("dilations", [1] * len(kernel)))
    if pad_type == "custom":
        pad = _ints(args["pad"])
    elif pad_type == "valid":
        pad = [0] * (2 * len(kernel))
    elif pad_type in ("same", "same_lower"):
        pad = []
        for size, k, s, d in zip(x.shape[2:], kernel, strides, dilations):
            total = max((int(np.ceil(size / s)) - 1) * s + (k - 1) * d + 1 - size, 0)
            small, large = total // 2, total - total // 2
            pad += [large, small] if pad_type == "same_lower" else [small, large]
    else:
        raise UnsupportedOperation(f"pad_type {pad_type}")
    return pad, strides, dilations


def _conv(a: dict) -> torch.Tensor:
    x, w = a["x"], a["weight"]
    a["kernel"] = list(w.shape[2:])
    pad, strides, dilations = _pool_padding(x, a)
    x = F.pad(x, [pad[2], pad[3], pad[0], pad[1]]) if len(pad) == 4 else F.pad(x, [pad[0], pad[1]])
    conv = F.conv2d if x.ndim == 4 else F.conv1d
    return conv(x, w, a.get("bias"), stride=strides, dilation=dilations, groups=int(a.get("groups", 1)))


def _pool(a: dict, kind: str) -> torch.Tensor:
    x = a["x"]
    a["kernel"] = _ints(a["kernel_sizes"])
    pad, strides, _ = _pool_padding(x, a)
    ceil = bool(a.get("ceil_mode", False))
    if kind == "max":
        x = F.pad(x, [pad[2], pad[3], pad[0], pad[1]], value=float("-inf"))
        return F.max_pool2d(x, a["kernel"], strides, ceil_mode=ceil)
    if pad[0] == pad[1] and pad[2] == pad[3] and pad[0] <= a["kernel"][0] // 2 and pad[2] <= a["kernel"][1] // 2:
        return F.avg_pool2d(
            x,
            a["kernel"],
            strides,
            padding=(pad[0], pad[2]),
            ceil_mode=ceil,
            count_include_pad=not bool(a.get("exclude_padding_from_average", False)),
        )
    raise UnsupportedOperation(f"avg_pool with asymmetric padding {pad}")


def _reduce(fn: Callable) -> Callable:
    def reduce(a: dict) -> torch.Tensor:
        axes = a.get("axes")
        keep = bool(a.get("keep_dims", False))
        if axes is None:
            return fn(a["x"], dim=tuple(range(a["x"].ndim)), keepdim=keep)
        return fn(a["x"], dim=tuple(_ints(axes)), keepdim=keep)

    return reduce


def _dequantize(a: dict) -> torch.Tensor:
    data = a["quantized_data"].float()
    axis = int(a["axis"])
    shape = [1] * data.ndim
    zero, scale = a["zero_point"].float(), a["scale"].float()
    if zero.numel() > 1 or scale.numel() > 1:
        shape[axis] = -1
    return (data - zero.reshape(shape if zero.numel() > 1 else [1] * data.ndim)) * scale.reshape(
        shape if scale.numel() > 1 else [1] * data.ndim
    )


def _matmul(a: dict) -> torch.Tensor:
    x, y = a["x"], a["y"]
    if a.get("transpose_x", False):
        x = x.transpose(-1, -2)
    if a.get("transpose_y", False):
        y = y.transpose(-1, -2)
    return torch.matmul(x, y)


def _slice_by_index(a: dict) -> torch.Tensor:
    """MIL's strided slice: per axis begin/end/stride, a mask that ignores begin or end, and axes to squeeze."""
    x = a["x"]
    rank = x.dim()
    begin, end = _ints(a["begin"]), _ints(a["end"])
    stride = _ints(a["stride"]) if a.get("stride") is not None else [1] * rank
    masks = {
        name: [bool(v) for v in np.asarray(a[name]).ravel()] if a.get(name) is not None else [False] * rank
        for name in ("begin_mask", "end_mask", "squeeze_mask")
    }
    if any(step < 1 for step in stride):
        raise UnsupportedOperation("slice_by_index with a negative stride")
    index = [
        slice(None if masks["begin_mask"][i] else begin[i], None if masks["end_mask"][i] else end[i], stride[i])
        for i in range(rank)
    ]
    if x.shape[0] > 1 and (begin[0], end[0], stride[0]) == (0, 1, 1) and not masks["squeeze_mask"][0]:
        index[0] = slice(None)  # the whole batch of a program saved for batch 1 (as `_batched_shape`)
    y = x[tuple(index)]
    squeeze = [i for i in range(rank) if masks["squeeze_mask"][i]]
    return y.squeeze(tuple(squeeze)) if squeeze else y


CAST = {"fp16": torch.float32, "fp32": torch.float32, "int32": torch.int64, "int64": torch.int64, "bool": torch.bool}

OPS: dict[str, Callable[[dict], Any]] = {
    "identity": lambda a: a["x"],
    "cast": lambda a: a["x"].to(CAST[str(a["dtype"])]),
    "conv": _conv,
    "linear": lambda a: F.linear(a["x"], a["weight"], a.get("bias")),
    "matmul": _matmul,
    "batch_norm": lambda a: F.batch_norm(
        a["x"], a["mean"], a["variance"], a.get("gamma"), a.get("beta"), eps=float(a.get("epsilon", 1e-5))
    ),
    "add": lambda a: a["x"] + a["y"],
    "sub": lambda a: a["x"] - a["y"],
    "mul": lambda a: a["x"] * a["y"],
    "real_div": lambda a: a["x"] / a["y"],
    "maximum": lambda a: torch.maximum(a["x"], a["y"]),
    "minimum": lambda a: torch.minimum(a["x"], a["y"]),
    "clip": lambda a: torch.clamp(a["x"], float(a["alpha"]), float(a["beta"])),
    "relu": lambda a: F.relu(a["x"]),
    "relu6": lambda a: F.relu6(a["x"]),
    "sigmoid": lambda a: torch.sigmoid(a["x"]),
    "sigmoid_hard": lambda a: torch.clamp(float(a.get("alpha", 0.2)) * a["x"] + float(a.get("beta", 0.5)), 0, 1),
    "silu": lambda a: F.silu(a["x"]),
    "tanh": lambda a: torch.tanh(a["x"]),
    "softmax": lambda a: torch.softmax(a["x"], int(a.get("axis", -1))),
    "reduce_mean": _reduce(torch.mean),
    "reduce_sum": _reduce(torch.sum),
    "reduce_max": _reduce(lambda x, dim, keepdim: torch.amax(x, dim=dim, keepdim=keepdim)),
    "max_pool": lambda a: _pool(a, "max"),
    "avg_pool": lambda a: _pool(a, "avg"),
    "concat": lambda a: torch.cat(list(a["values"]), int(a["axis"])),
    "reshape": lambda a: a["x"].reshape(_batched_shape(a["x"], _ints(a["shape"]))),
    "squeeze": lambda a: a["x"].squeeze(tuple(_ints(a["axes"]))) if a.get("axes") is not None else a["x"].squeeze(),
    "expand_dims": lambda a: a["x"].reshape(_expand_shape(a["x"].shape, _ints(a["axes"]))),
    "transpose": lambda a: a["x"].permute(_ints(a["perm"])),
    "slice_by_index": _slice_by_index,
    "pad": lambda a: F.pad(
        a["x"],
        _torch_pad(_ints(a["pad"])),
        mode=str(a.get("mode", "constant")),
        value=float(a.get("constant_val", 0.0)),
    ),
    "constexpr_affine_dequantize": _dequantize,
}


def _batched_shape(x: torch.Tensor, shape: list[int]) -> list[int]:
    """Programs are saved for batch 1; run on a batch, a reshape to [1, ...] keeps the batch axis."""
    if shape and shape[0] == 1 and x.shape[0] > 1 and int(np.prod(shape)) * x.shape[0] == x.numel():
        return [x.shape[0], *shape[1:]]
    return shape


def _expand_shape(shape: torch.Size, axes: list[int]) -> list[int]:
    out = list(shape)
    for axis in sorted(a if a >= 0 else a + len(shape) + len(axes) for a in axes):
        out.insert(axis, 1)
    return out


def _torch_pad(pad: list[int]) -> list[int]:
    """MIL pads list (begin, end) per dimension from the first; torch lists them from the last."""
    pairs = [pad[i : i + 2] for i in range(0, len(pad), 2)]
    return [p for pair in reversed(pairs) for p in pair]


class MilProgram:
    """A saved ML program, ready to run on numpy inputs."""

    def __init__(self, path: Path) -> None:
        import coremltools as ct
        from coremltools.converters.mil.frontend.milproto.load import load
        from coremltools.converters.mil.mil import types

        model = ct.models.MLModel(str(path), skip_model_load=True)
        spec = model.get_spec()
        program = load(spec, spec.specificationVersion, file_weights_dir=model.weights_dir)
        self.function = program.functions["main"]
        self.types = types
        unknown = sorted({op.op_type for op in self.function.operations if op.op_type != "const"} - set(OPS))
        if unknown:
            raise UnsupportedOperation(f"{path}: the Core ML executor does not know operation(s) {', '.join(unknown)}")
        self.input_names = list(self.function.inputs)
        self.output_names = [v.name for v in self.function.outputs]
        # constants, and operations on constants only (weight dequantization), are evaluated once here
        self.constants: dict[str, Any] = {}
        self.steps = []
        for op in self.function.operations:
            if op.op_type == "const":
                continue
            if op.op_type.startswith("constexpr_"):
                self._store(
                    op,
                    OPS[op.op_type]({k: self._value(v, self.constants) for k, v in op.inputs.items()}),
                    self.constants,
                )
            else:
                self.steps.append(op)

    def _is_fp16(self, var) -> bool:
        return self.types.builtin_to_string(var.dtype) == "fp16"

    def _value(self, var, env: dict) -> Any:
        if isinstance(var, (tuple, list)):
            return [self._value(v, env) for v in var]
        if var.name in env:
            return env[var.name]
        if var.name in self.constants:
            return self.constants[var.name]
        value = var.val
        if value is None:
            raise UnsupportedOperation(f"no value for {var.name}")
        if isinstance(value, np.ndarray) and value.dtype.kind in "fiub":
            tensor = torch.from_numpy(np.ascontiguousarray(value))
            value = tensor.float() if value.dtype.kind == "f" else tensor
        elif isinstance(value, (np.floating, np.integer, np.bool_)):
            value = value.item()
        self.constants[var.name] = value  # a constant: converted once
        return value

    def _store(self, op, result: Any, env: dict) -> None:
        results = result if isinstance(result, (tuple, list)) else [result]
        for var, value in zip(op.outputs, results):
            if isinstance(value, torch.Tensor) and value.is_floating_point() and self._is_fp16(var):
                value = value.to(torch.float16).to(torch.float32)  # stored as fp16 on the device
            env[var.name] = value

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Inputs of the program's shape, or a batch of them along the first axis."""
        env: dict[str, Any] = dict(self.constants)
        env.update({name: torch.from_numpy(np.asarray(value, dtype=np.float32)) for name, value in inputs.items()})
        with torch.no_grad():
            for op in self.steps:
                self._store(op, OPS[op.op_type]({k: self._value(v, env) for k, v in op.inputs.items()}), env)
        return {name: env[name].numpy() for name in self.output_names}
