"""The scorecard's rows and rendering: the registry's published top-1 where one exists (alpha 1.0 at the default
resolution) and none elsewhere; the checked-in scorecard rendered again from its JSON, of either schema."""
import json
import shutil
from pathlib import Path

import pytest

from edgecnn.formats import parse_formats
from edgecnn.sweeps.scorecard import (
    SCHEMA,
    SCHEMA_V1,
    PublishedTop1,
    ScorecardRequest,
    markdown,
    read,
    record,
    render,
)
from edgecnn.sweeps.variants import Executor, NodeInfo, VariantOutcome, VariantStatus
from edgecnn.util.errors import UsageError
from edgecnn.zoo.registry import get_model_info

CHECKED_IN = Path(__file__).resolve().parents[1] / "benchmarks" / "scorecard" / "scorecard.json"


def _published(model: str) -> PublishedTop1:
    reference = get_model_info(model).reference
    return PublishedTop1(reference.top1, reference.source)


@pytest.mark.quick
def test_only_alpha_1_at_the_default_resolution_carries_the_published_top1(tmp_path):
    tflite = parse_formats("tflite")
    works = (ScorecardRequest(["efficientnet_lite0", "mobilenet_v2"], [1.0, 0.5], tflite, tmp_path).works()
             + ScorecardRequest(["mobilenet_v2"], [1.0], tflite, tmp_path, resolutions=[96]).works())
    node = NodeInfo.here()
    # a failed variant is recorded without an export: its registry facts are there all the same
    rows = {w.spec.id: record(w, VariantOutcome(w.spec.id, VariantStatus.FAILED, Executor.SERIAL, node, error="x"))
            for w in works}
    assert rows["mobilenet_v2_a1.0_r224"].published_top1 == _published("mobilenet_v2")
    assert rows["mobilenet_v2_a1.0_r224"].published_top1.source == "torchvision weights documentation (IMAGENET1K_V1)"
    assert rows["efficientnet_lite0_a1.0_r224"].published_top1 == _published("efficientnet_lite0")
    for other in ("mobilenet_v2_a0.5_r224", "efficientnet_lite0_a0.5_r224", "mobilenet_v2_a1.0_r96"):
        assert rows[other].published_top1 is None, other
    assert rows["mobilenet_v2_a1.0_r224"].family == "mobilenet" and rows["mobilenet_v2_a1.0_r224"].error == "x"


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    folder = tmp_path_factory.mktemp("card")
    shutil.copy(CHECKED_IN, folder / "scorecard.json")
    return folder, render(folder / "scorecard.json")


@pytest.mark.quick
def test_the_checked_in_scorecard_renders_again_with_the_published_top1(rendered):
    folder, card = rendered
    original = json.loads(CHECKED_IN.read_text())
    assert len(card.rows) == len(original["rows"]) == 16
    for row, before in zip(card.rows, original["rows"]):  # measured figures as they were
        assert row.variant == before["variant"] and row.latency_ms == before["latency_ms"]
        assert row.int8_over_fp32 == before["int8_over_fp32"]
        assert row.published_top1 == (_published(row.model) if row.alpha == 1.0 else None)
    text = (folder / "scorecard.md").read_text()
    assert "ImageNet top-1 % (published)" in text and "[1] torchvision weights documentation (IMAGENET1K_V1)" in text
    vgg = next(line for line in text.splitlines() if line.startswith("vgg16_a1.0_r224"))
    assert f"{get_model_info('vgg16').reference.top1:.1f} [1]" in vgg
    assert text == markdown(card)
    assert (folder / "scorecard.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((folder / "scorecard.json").read_text())["schema"] == SCHEMA
    assert read(folder / "scorecard.json") == card  # written and read back as the same records


@pytest.mark.quick
def test_a_first_schema_scorecard_is_read_and_rendered_alike(rendered, tmp_path):
    folder, card = rendered
    old = json.loads((folder / "scorecard.json").read_text())
    old["schema"] = SCHEMA_V1
    for row in old["rows"]:  # as /1 wrote them: no published figure, no error where there was none
        del row["published_top1"], row["error"]
    (tmp_path / "scorecard.json").write_text(json.dumps(old))
    assert render(tmp_path / "scorecard.json") == card
    assert (tmp_path / "scorecard.md").read_text() == (folder / "scorecard.md").read_text()


@pytest.mark.quick
@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(schema="edgecnn.scorecard/9"), "has schema 'edgecnn.scorecard/9'"),
    (lambda d: d["rows"][0].update(status="maybe"), "does not follow edgecnn.scorecard/2: rows.0.status"),
    (lambda d: d["rows"][1]["latency_ms"]["model_int8.tflite"].update({"1": "fast"}), "rows.1.latency_ms"),
])
def test_a_scorecard_that_does_not_parse_is_one_line(rendered, tmp_path, change, message):
    folder, _ = rendered
    data = json.loads((folder / "scorecard.json").read_text())
    change(data)
    (tmp_path / "scorecard.json").write_text(json.dumps(data))
    with pytest.raises(UsageError, match=message.replace(".", r"\.")) as caught:
        render(tmp_path / "scorecard.json")
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "scorecard.md").exists()
