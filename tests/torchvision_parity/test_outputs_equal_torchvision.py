"""Same checkpoint, same input, same output as torchvision itself.

Runs only in the `.venv-torchvision` environment that `make test-torchvision` builds (torchvision
does not import beside the project's pinned torch). Every tensor of the state_dict, BatchNorm
statistics included, is randomised, so a wrong eps, activation or layer order shows.
"""
import pytest
import torch
import torchvision.models as tvm

import edgecnn

# Built without auxiliary classifiers, as edgecnn builds them.
TORCHVISION_KWARGS = {"googlenet": {"aux_logits": False, "init_weights": True},
                      "inception_v3": {"aux_logits": False, "init_weights": True}}
COMPATIBLE = sorted(n for n in edgecnn.list_models() if edgecnn.get_model_info(n).torchvision_compatible)


def _random_state(model: torch.nn.Module) -> dict:
    generator = torch.Generator().manual_seed(0)
    state = {}
    for key, value in model.state_dict().items():
        if not value.is_floating_point():
            state[key] = value.clone()
        elif key.endswith("running_var"):
            state[key] = torch.rand(value.shape, generator=generator) * 0.5 + 0.75
        else:
            state[key] = torch.randn(value.shape, generator=generator) * 0.1
    return state


def _compare(ours: torch.nn.Module, theirs: torch.nn.Module, resolution: int) -> None:
    assert list(ours.state_dict()) == list(theirs.state_dict())
    state = _random_state(theirs)
    theirs.load_state_dict(state, strict=True)
    ours.load_state_dict(state, strict=True)
    x = torch.randn(2, 3, resolution, resolution, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        expected, actual = theirs.eval()(x), ours.eval()(x)
    assert expected.std() > 1e-3, "degenerate outputs would make the comparison meaningless"
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item())


@pytest.mark.parametrize("name", COMPATIBLE)
def test_outputs_equal_torchvision(name):
    info = edgecnn.get_model_info(name)
    _compare(edgecnn.create_model(name), getattr(tvm, name)(weights=None, **TORCHVISION_KWARGS.get(name, {})),
             min(info.default_resolution, 224))


@pytest.mark.parametrize("name", ["googlenet", "inception_v3"])
def test_transform_input_for_torchvision_pretrained_inception_checkpoints(name):
    kwargs = {**TORCHVISION_KWARGS[name], "transform_input": True}
    _compare(edgecnn.create_model(name, transform_input=True), getattr(tvm, name)(weights=None, **kwargs), 299)


@pytest.mark.parametrize("alpha", [0.35, 0.5, 1.4])
def test_mobilenet_v2_width_multiplier_equals_torchvision(alpha):
    _compare(edgecnn.create_model("mobilenet_v2", alpha=alpha), tvm.mobilenet_v2(width_mult=alpha), 160)
