"""A quiet console: third-party output goes to the export's log, edgecnn's own lines stay on the terminal."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgecnn.util import console

REPO = Path(__file__).resolve().parents[1]
# every line edgecnn itself writes to stderr: its steps and notes, and its one-line failures
OWN_LINE = re.compile(r"^(\[edgecnn\] |edgecnn: )")


SCRIPT = """
import os, sys, warnings
from pathlib import Path
from edgecnn.util import console
with console.third_party_to(Path(sys.argv[1])):
    with console.step("a step"):
        print("from print")
        print("from print to stderr", file=sys.stderr)
        os.write(1, b"from C++ on fd 1\\n")
        os.write(2, b"from C++ on fd 2\\n")
        warnings.warn("a library's warning")
        console.say("[edgecnn] our own line")
print("after: stdout is the terminal's again")
"""


def test_third_party_output_from_python_and_from_file_descriptors_goes_to_the_log(tmp_path):
    log = tmp_path / "export.log"
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(log)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "after: stdout is the terminal's again\n"
    lines = result.stderr.splitlines()
    assert lines[0] == "[edgecnn] our own line" and re.fullmatch(r"\[edgecnn\] a step \(\d+\.\d s\)", lines[1])
    assert len(lines) == 2, lines
    written = log.read_text()
    for text in ("from print", "from print to stderr", "from C++ on fd 1", "from C++ on fd 2", "a library's warning"):
        assert text in written
    assert "our own line" not in written


def test_verbose_shows_third_party_output_live(tmp_path, capfd):
    with console.third_party_to(tmp_path / "export.log", verbose=True):
        os.write(2, b"live\n")
    assert "live" in capfd.readouterr().err and not (tmp_path / "export.log").exists()


def test_a_failed_step_prints_no_finished_line(capfd):
    with pytest.raises(RuntimeError):
        with console.step("doomed"):
            raise RuntimeError("x")
    assert "doomed" not in capfd.readouterr().err


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.parametrize("args, variant", [
    # every converter, validation and latency, at the smallest size and calibration that run them all
    (["ALPHA=0.35", "RES=64", "CALIB_COUNT=16"], "mobilenet_v2_a0.35_r64"),
    # the README's first command as written: `make test-full`
    pytest.param(["ALPHA=0.75"], "mobilenet_v2_a0.75_r224", marks=pytest.mark.slow),
])
def test_make_export_prints_only_edgecnn_lines_on_stderr(tmp_path, args, variant):
    """`make export` (every format, validation, latency): stderr holds only our lines, and what the
    converters said is in the export's log."""
    out = tmp_path / variant
    result = subprocess.run(["make", "-s", "export", "MODEL=mobilenet_v2", *args, f"OUT={out}"], cwd=REPO,
                            capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    stray = [line for line in result.stderr.splitlines() if not OWN_LINE.match(line)]
    assert stray == [], stray[:10]
    assert re.search(rf"^\[edgecnn\] {re.escape(variant)}: tflite exported \(\d+\.\d s\)$", result.stderr, re.M)
    assert "manifest: " in result.stdout and "converter output: " in result.stdout
    log = (out / "export.log").read_text()
    assert log.strip(), "the converters said nothing at all? then the log proves nothing"
    assert "converted in training mode" not in log  # the int8 graph is marked eval once its ops are checked
