"""The Core ML program executor against PyTorch, on real coremltools conversions (Linux cannot predict)."""
import platform

import numpy as np
import pytest
import torch

import edgecnn
from edgecnn.data.calibration import load_calibration
from edgecnn.weights.reference import prepare_model
from edgecnn.formats import coreml as coreml_format
from edgecnn.formats.mil_executor import OPS, MilProgram, UnsupportedOperation
from edgecnn.harness.parity import compare, violations

RESOLUTION = 64
MODELS = ["mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0", "resnet18", "googlenet"]


def reference(name):
    spec = edgecnn.VariantSpec.create(name, alpha=0.5, resolution=RESOLUTION)
    images = load_calibration(RESOLUTION, 12, progress=False).images
    model, _ = prepare_model(spec, None, images[:8])
    test_images = images[8:]
    with torch.no_grad():
        x = torch.from_numpy(test_images).permute(0, 3, 1, 2)
        expected = model(x.float()).numpy()
        fp32_noise = compare(expected, model.double()(x.double()).numpy()).max_rel_error
    return model.float(), test_images, expected, fp32_noise


def execute(program: MilProgram, images: np.ndarray) -> np.ndarray:
    return np.concatenate([program.run({"image": im.transpose(2, 0, 1)[None].astype(np.float32)})["logits"]
                           for im in images])


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in ("efficientnet_b0", "googlenet") else n
                                  for n in MODELS])
def test_executor_matches_pytorch_on_fp32_and_fp16_programs(name, tmp_path):
    model, images, expected, fp32_noise = reference(name)
    for precision in ("fp32", "fp16"):
        path = tmp_path / f"{precision}.mlpackage"
        coreml_format.convert(model, RESOLUTION, precision).save(str(path))
        program = MilProgram(path)
        one_by_one = execute(program, images)
        parity = compare(one_by_one, expected)
        # a batch through a program saved for batch 1 gives each image's own result
        batched = program.run({"image": images.transpose(0, 3, 1, 2).astype(np.float32)})["logits"]
        assert batched.shape == one_by_one.shape
        assert compare(batched, expected).top1_agreement == parity.top1_agreement
        if precision == "fp32":
            assert parity.max_rel_error < max(1e-4, 4 * fp32_noise), parity
            assert np.allclose(batched, one_by_one, rtol=1e-4, atol=1e-4)
            assert parity.top1_agreement == 1.0
        else:
            # the fp32 program above proves the op semantics; fp16 must stay within the gate of its precision
            assert violations(parity, "fp16", trained=True) == [] and parity.max_rel_error < 0.1, parity
            assert parity.max_rel_error > 1e-5, "fp16 storage must show: is the rounding emulated?"


def test_an_operation_the_executor_does_not_know_is_an_error(tmp_path, monkeypatch):
    model, *_ = reference("mobilenet_v2")
    path = tmp_path / "m.mlpackage"
    coreml_format.convert(model, RESOLUTION).save(str(path))
    MilProgram(path)
    monkeypatch.delitem(OPS, "clip")
    with pytest.raises(UnsupportedOperation, match="does not know operation.*clip"):
        MilProgram(path)


def test_runner_uses_the_executor_off_macos(tmp_path):
    model, images, expected, _ = reference("resnet18")
    path = tmp_path / "m.mlpackage"
    coreml_format.convert(model, RESOLUTION).save(str(path))
    runner = coreml_format.Runner(path, {})
    assert runner.native == (platform.system() == "Darwin")
    assert compare(runner.run(images), expected).worst_cosine > 0.99


def test_slice_by_index_follows_mils_masks_and_keeps_the_batch():
    x = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)
    args = {"x": x, "begin": [0, 1, 0, 2], "end": [1, 3, 4, 0], "stride": [1, 1, 2, 1],
            "begin_mask": [False, False, True, False], "end_mask": [False, False, False, True],
            "squeeze_mask": [False, False, False, False]}
    torch.testing.assert_close(OPS["slice_by_index"](args), x[:, 1:3, 0:4:2, 2:])
    args["squeeze_mask"] = [False, True, False, False]
    args["end"] = [1, 2, 4, 0]
    torch.testing.assert_close(OPS["slice_by_index"](args), x[:, 1, 0:4:2, 2:])
