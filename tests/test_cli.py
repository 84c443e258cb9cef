"""The command line, run as a user runs it."""
import subprocess
import sys

import pytest

import edgecnn

pytestmark = pytest.mark.quick  # needs no converter: `make test-quick`


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgecnn", *args], capture_output=True, text=True, timeout=300)


def test_list_shows_every_model_with_its_figures():
    result = run("list")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for name in edgecnn.list_models():
        row = next(line for line in lines if line.startswith(name + " "))
        assert str(edgecnn.get_model_info(name).default_resolution) in row
    row = next(line for line in lines if line.startswith("mobilenet_v2 "))
    assert "3.50 M" in row and "300.77 M" in row
    assert "multiply-accumulates" in result.stdout


def test_summary_prints_layers_and_totals_beside_the_reference():
    result = run("summary", "mobilenet_v2")
    assert result.returncode == 0, result.stderr
    assert "features.0.0" in result.stdout and "classifier.1" in result.stdout
    assert "3,504,872   reference 3,504,872 (equal)" in result.stdout
    assert "300,774,272   reference 300,774,272 (equal)" in result.stdout


def test_summary_with_width_and_resolution_multipliers():
    result = run("summary", "mobilenet_v2", "--alpha", "0.75", "--rho", "0.714")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("mobilenet_v2_a0.75_r160")
    assert "107,295,200" in result.stdout  # torchvision's width table, 0.75 at 160


def test_summary_of_a_classic_model_at_its_own_resolution():
    result = run("summary", "inception_v3")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("inception_v3_a1.0_r299")
    assert "Mixed_7c.branch_pool.conv" in result.stdout
    assert "5,713,216,096   reference 5,713,216,096 (equal)" in result.stdout


@pytest.mark.parametrize("args,message", [
    (["summary", "mobilenet_v5"], "unknown model 'mobilenet_v5'; did you mean mobilenet_v2"),
    (["summary", "mobilenet_v2", "--alpha", "0"], "alpha must be in (0, 4]"),
    (["summary", "mobilenet_v2", "--alpha", "50"], "alpha must be in (0, 4]"),
    (["summary", "mobilenet_v2", "--alpha", "wide"], "not a number"),
    (["summary", "mobilenet_v2", "--resolution", "16"], "too small for mobilenet_v2"),
    (["summary", "mobilenet_v2", "--resolution", "200.5"], "whole number"),
    (["summary", "inception_v3", "--resolution", "74"], "too small for inception_v3: its downsampling needs at least 75"),
    (["summary", "resnet50", "--alpha", "-1"], "alpha must be in (0, 4]"),
    (["summary", "resnet5"], "did you mean resnet50"),
    (["summary", "mobilenet_v2", "--num-classes", "0"], "num_classes must be at least 1"),
    (["summary", "mobilenet_v2", "--rho", "0.5", "--resolution", "112"], "not allowed with"),
    (["summary"], "required: model"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_input_gives_one_line_and_exit_2(args, message):
    result = run(*args)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
