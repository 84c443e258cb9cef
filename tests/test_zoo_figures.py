"""The figures `edgecnn list` prints are recorded in edgecnn/zoo/figures.json; they must match the built models."""
import dataclasses
import json
import subprocess
import sys

import pytest

import edgecnn
from edgecnn.zoo import figures

pytestmark = pytest.mark.quick  # needs no converter: `make test-quick`


@pytest.fixture(scope="module")
def measured():
    return figures.measure()


def test_recorded_figures_match_the_built_models(measured):
    recorded = figures.recorded()
    assert figures.differences(recorded, measured) == [], (
        "edgecnn/zoo/figures.json is stale: run `python -m edgecnn.zoo.figures --write`")
    assert recorded == measured
    assert {f.name for f in recorded} == set(edgecnn.list_models())


def test_list_table_does_not_import_torch():
    # Load the module file on its own, so the check does not depend on what edgecnn/__init__.py imports.
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('edgecnn_zoo_figures', {str(figures.__file__)!r})\n"
        "f = sys.modules[spec.name] = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(f)\n"
        "assert f.list_table().startswith('model')\n"
        "print('torch' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_a_changed_figure_is_reported(measured, tmp_path, monkeypatch):
    data = json.loads(figures.FIGURES_FILE.read_text())
    victim = data["models"][0]
    victim["params"] += 1
    altered = tmp_path / "figures.json"
    altered.write_text(json.dumps(data))
    monkeypatch.setattr(figures, "FIGURES_FILE", altered)

    diffs = figures.differences(figures.recorded(), measured)
    assert len(diffs) == 1 and diffs[0].startswith(f"{victim['name']}: params recorded {victim['params']}")

    monkeypatch.setattr(figures, "measure", lambda: measured)
    assert figures.main([]) == 1


def test_a_missing_or_unregistered_model_is_reported(measured):
    extra = dataclasses.replace(measured[0], name="not_a_model")
    assert set(figures.differences(measured[1:] + [extra], measured)) == {
        "not_a_model: recorded but not a registered model",
        f"{measured[0].name}: measured but not recorded",
    }


def test_write_round_trips(measured, tmp_path):
    path = tmp_path / "figures.json"
    figures.write(measured, path)
    assert figures.recorded(path) == measured
    assert [p.name for p in tmp_path.iterdir()] == ["figures.json"]  # no temp file left behind
