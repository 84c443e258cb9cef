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
    result = run("summary", "--model", "mobilenet_v2")
    assert result.returncode == 0, result.stderr
    assert "features.0.0" in result.stdout and "classifier.1" in result.stdout
    assert "3,504,872   reference 3,504,872 (equal)" in result.stdout
    assert "300,774,272   reference 300,774,272 (equal)" in result.stdout


def test_summary_with_width_and_resolution_multipliers():
    result = run("summary", "--model", "mobilenet_v2", "--alpha", "0.75", "--rho", "0.714")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("mobilenet_v2_a0.75_r160")
    assert "107,295,200" in result.stdout  # torchvision's width table, 0.75 at 160


def test_summary_of_a_classic_model_at_its_own_resolution():
    result = run("summary", "--model", "inception_v3")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("inception_v3_a1.0_r299")
    assert "Mixed_7c.branch_pool.conv" in result.stdout
    assert "5,713,216,096   reference 5,713,216,096 (equal)" in result.stdout


@pytest.mark.parametrize("args,message", [
    (["summary", "--model", "mobilenet_v5"], "unknown model 'mobilenet_v5'; did you mean mobilenet_v2"),
    (["summary", "--model", "mobilenet_v2", "--alpha", "0"], "alpha must be in (0, 4]"),
    (["summary", "--model", "mobilenet_v2", "--alpha", "50"], "alpha must be in (0, 4]"),
    (["summary", "--model", "mobilenet_v2", "--alpha", "wide"], "not a number"),
    (["summary", "--model", "mobilenet_v2", "--resolution", "16"], "too small for mobilenet_v2"),
    (["summary", "--model", "mobilenet_v2", "--resolution", "200.5"], "whole number"),
    (["summary", "--model", "inception_v3", "--resolution", "74"], "too small for inception_v3: its downsampling needs at least 75"),
    (["summary", "--model", "resnet50", "--alpha", "-1"], "alpha must be in (0, 4]"),
    (["summary", "--model", "resnet5"], "did you mean resnet50"),
    (["summary", "--model", "mobilenet_v2", "--num-classes", "0"], "num_classes must be at least 1"),
    (["summary", "--model", "mobilenet_v2", "--rho", "0.5", "--resolution", "112"], "not allowed with"),
    (["summary"], "required: --model"),
    (["exprot", "--model", "mobilenet_v2"], "invalid choice: 'exprot' (choose from"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_input_gives_one_line_and_exit_2(args, message):
    result = run(*args)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_version():
    result = run("--version")
    assert result.returncode == 0 and result.stdout == f"edgecnn {edgecnn.__version__}\n"
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
    assert project["version"] == edgecnn.__version__


def test_every_option_has_help_and_every_command_an_example_that_parses():
    import argparse
    import shlex

    from edgecnn.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    for name, command in commands.items():
        for action in command._actions:
            assert action.help, (name, action.dest)
        examples = [line.strip() for line in command.epilog.splitlines()[1:]]
        assert examples and all(e.startswith(f"edgecnn {name}") for e in examples), name
        for example in examples:  # each parses as written
            assert parser.parse_args(shlex.split(example)[1:]).command == name
    formats = parser.description
    assert all(f in formats for f in ("ONNX", "TFLite", "Core ML", "ExecuTorch"))


@pytest.mark.parametrize("args, suggestion", [
    (["exprot", "--model", "mobilenet_v2"], "did you mean export?"),
    (["export", "--model", "mobilenet_v2", "--alpah", "0.5"], "unrecognized arguments: --alpah 0.5; did you mean --alpha?"),
    (["validate", "x", "--lables-dir", "y"], "did you mean --labels-dir?"),
    (["summary", "--model", "mobilenet_v2", "--resolutoin=96"], "did you mean --resolution?"),
])
def test_a_misspelt_command_or_option_gets_the_closest_real_one(args, suggestion):
    result = run(*args)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.rstrip().endswith(suggestion), result.stderr
