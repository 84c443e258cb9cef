"""The public API: creating, profiling, and the clear errors for bad input."""
import pytest
import torch
from torch import nn

import edgecnn
from edgecnn.zoo.spec import resolution_from_rho


@pytest.mark.quick
def test_create_model_is_eval_ready_and_records_its_info():
    model = edgecnn.create_model("mobilenet_v2", alpha=0.75, num_classes=5)
    assert not model.training
    assert model.model_info.name == "mobilenet_v2"
    assert model.classifier[-1].out_features == 5


@pytest.mark.quick
def test_builder_options_pass_through_and_unknown_ones_are_refused():
    model = edgecnn.create_model("efficientnet_b0", dropout=0.0)
    assert model.classifier[0].p == 0.0
    with pytest.raises(ValueError, match="does not take option.*nonsense.*takes: dropout"):
        edgecnn.create_model("efficientnet_b0", nonsense=1)


@pytest.mark.quick
def test_unknown_model_lists_close_matches():
    with pytest.raises(ValueError, match="unknown model 'mobilenetv2'; did you mean mobilenet_v2"):
        edgecnn.create_model("mobilenetv2")
    with pytest.raises(ValueError, match="unknown model 'zzz'; `edgecnn list`"):
        edgecnn.create_model("zzz")


@pytest.mark.quick
@pytest.mark.parametrize("alpha", [0, -0.5, 4.5, 1e9, float("nan"), float("inf"), "1.0", True])
def test_bad_alpha(alpha):
    with pytest.raises(ValueError, match="alpha must be"):
        edgecnn.create_model("mobilenet_v2", alpha=alpha)


@pytest.mark.quick
@pytest.mark.parametrize("num_classes", [0, -3, 2.5])
def test_bad_num_classes(num_classes):
    with pytest.raises(ValueError, match="num_classes must be"):
        edgecnn.create_model("mobilenet_v2", num_classes=num_classes)


@pytest.mark.parametrize("resolution,message", [(31, "too small for mobilenet_v2"), (224.5, "whole number"),
                                                ("224", "whole number"), (100_000, "maximum")])
@pytest.mark.quick
def test_bad_resolution(resolution, message):
    model = edgecnn.create_model("mobilenet_v2")
    with pytest.raises(ValueError, match=message):
        edgecnn.profile(model, resolution)
    with pytest.raises(ValueError, match=message):
        edgecnn.VariantSpec.create("mobilenet_v2", resolution=resolution)


@pytest.mark.quick
def test_resolution_multiplier_gives_mobilenets_canonical_sizes():
    assert [resolution_from_rho(224, r) for r in (1, 6 / 7, 5 / 7, 4 / 7, 3 / 7)] == [224, 192, 160, 128, 96]
    assert [resolution_from_rho(224, r) for r in (0.857, 0.714, 0.571, 0.429)] == [192, 160, 128, 96]
    assert resolution_from_rho(240, 1.0) == 240  # rho 1 keeps a default that is no multiple of 8
    with pytest.raises(ValueError, match="rho"):
        resolution_from_rho(224, 0)


@pytest.mark.quick
def test_variant_spec_id_and_rho():
    spec = edgecnn.VariantSpec.create("mobilenet_v2", alpha=0.75, rho=5 / 7)
    assert (spec.resolution, spec.id) == (160, "mobilenet_v2_a0.75_r160")
    assert edgecnn.VariantSpec.create("efficientnet_b1").id == "efficientnet_b1_a1.0_r240"
    with pytest.raises(ValueError, match="not both"):
        edgecnn.VariantSpec.create("mobilenet_v2", resolution=160, rho=0.5)


@pytest.mark.quick
def test_profile_totals_are_the_sum_of_layers_and_match_hand_arithmetic():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))
    prof = edgecnn.profile(model, 32)
    conv, bn = prof.layers[0], prof.layers[1]
    assert conv.output_shape == (1, 8, 16, 16)
    assert conv.macs == 16 * 16 * 8 * 3 * 3 * 3
    assert conv.params == 8 * 3 * 3 * 3 and bn.params == 16
    assert prof.macs == conv.macs + 8 * 10
    assert prof.params == sum(layer.params for layer in prof.layers) == 216 + 16 + 90
    assert conv.activation_bytes == 8 * 16 * 16 * 4
    assert prof.peak_activation_bytes == 3 * 32 * 32 * 4 + 8 * 16 * 16 * 4
    assert model.training  # the caller's mode is restored
    assert next(model.parameters()).device.type == "cpu"


@pytest.mark.quick
def test_profile_of_a_zoo_model_sums_its_layers():
    prof = edgecnn.profile(edgecnn.create_model("efficientnet_b0"), 224)
    assert prof.macs == sum(layer.macs for layer in prof.layers)
    assert prof.params == sum(layer.params for layer in prof.layers)


def test_the_readmes_python_api_block_runs_as_written(tmp_path, monkeypatch, capsys):
    """The block is executed verbatim, in a folder holding the export it names."""
    from pathlib import Path

    from edgecnn.exporter.pipeline import ExportRequest, run_export
    from edgecnn.formats import parse_formats
    from edgecnn.harness.parity import CheckStatus

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = readme.split("## Python API", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    spec = edgecnn.VariantSpec.create("mobilenet_v2", alpha=0.75)
    assert 'Path("export/mobilenet_v2_a0.75_r224")' in block and spec.id == "mobilenet_v2_a0.75_r224"
    run_export(ExportRequest(spec, parse_formats("onnx,tflite"), calib_count=8,
                             out=tmp_path / "export" / spec.id, validate=False))
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)
    report = namespace["report"]
    assert report.passed and report.artifacts[2].path == "model_int8.tflite"
    assert report.artifacts[2].status is CheckStatus.REPORTED and report.latency is not None
    assert namespace["spec"].id == "mobilenet_v2_a0.75_r160"
