"""Measure torchvision models into reference JSON (keys, shapes, parameters, conv/linear MACs).

Run in the torchvision environment (`make test-torchvision` builds it):
    .venv-torchvision/bin/python tests/reference/measure_torchvision.py vgg16 vgg16_bn wide_resnet101_2
It reproduces the figures of the files that came with the project (checked by running it on one of them),
and was used to add the models those files lack.
"""
import json
import sys
from pathlib import Path

import torch
import torchvision
from torchvision import models


def conv_linear_macs(model: torch.nn.Module, resolution: int) -> tuple[int, int, list[int]]:
    counts = {"conv": 0, "linear": 0}

    def on_conv(m, inputs, out):
        counts["conv"] += out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    def on_linear(m, inputs, out):
        counts["linear"] += out.numel() * m.in_features

    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            m.register_forward_hook(on_conv)
        elif isinstance(m, torch.nn.Linear):
            m.register_forward_hook(on_linear)
    with torch.no_grad():
        out = model.eval()(torch.zeros(1, 3, resolution, resolution))
    return counts["conv"], counts["linear"], list(out.shape)


def measure(name: str, resolution: int = 224) -> dict:
    kwargs = {"aux_logits": False, "init_weights": True} if name in ("googlenet", "inception_v3") else {}
    model = getattr(models, name)(weights=None, **kwargs)
    conv, linear, output_shape = conv_linear_macs(model, resolution)
    state = model.state_dict()
    params = dict(model.named_parameters())
    return {
        "name": name,
        "torch_version": torch.__version__,
        "torchvision_version": torchvision.__version__,
        "constructor": f"torchvision.models.{name}(weights=None{''.join(f', {k}={v}' for k, v in kwargs.items())})",
        "input_resolution": resolution,
        "num_params": sum(p.numel() for p in model.parameters()),
        "num_state_dict_tensors": len(state),
        "macs": conv + linear,
        "macs_conv2d": conv,
        "macs_linear": linear,
        "output_shape_batch1": output_shape,
        "state_dict": [{"key": k, "shape": list(v.shape), "dtype": str(v.dtype).removeprefix("torch."),
                        "kind": "param" if k in params else "buffer"} for k, v in state.items()],
    }


if __name__ == "__main__":
    out_dir = Path(__file__).parent / "torchvision"
    for model_name in sys.argv[1:]:
        figures = measure(model_name, 299 if model_name == "inception_v3" else 224)
        (out_dir / f"{model_name}.json").write_text(json.dumps(figures, indent=1) + "\n")
        print(model_name, figures["num_params"], figures["macs"])
