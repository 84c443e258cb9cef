"""Hostile environments: an unwritable target, a disk that fills up, two exports of one variant at once."""
import hashlib
import os
import shutil
import subprocess
import sys
import time
import uuid

import pytest

from edgecnn.util.atomic import atomic_folder, check_writable
from edgecnn.util.errors import ConcurrentWrite, UsageError

VARIANT = ["--model", "mobilenet_v2", "--alpha", "0.35", "--resolution", "32", "--calib-count", "4"]


def export(*args, cwd=None):
    return subprocess.Popen([sys.executable, "-m", "edgecnn", "export", *VARIANT, *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd)


def finish(process, timeout=600):
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def tree_digest(folder):
    """Every file's relative path and content, so that 'byte-identical' means what it says."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*")):
        digest.update(str(path.relative_to(folder)).encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.mark.quick
def test_a_target_that_cannot_really_be_written_is_refused_before_any_work(tmp_path):
    """As root, /proc passes os.access; creating an entry there fails, and so does the check."""
    if os.path.isdir("/proc/self"):
        with pytest.raises(UsageError, match="cannot write to /proc/x: /proc: "):
            check_writable(__import__("pathlib").Path("/proc/x"))
    started = time.perf_counter()
    code, out, err = finish(export("--out", "/proc/x", "--formats", "onnx"))
    assert code == 2 and err.strip().splitlines() == [err.strip().splitlines()[-1]], err
    assert err.strip().startswith("edgecnn: error: cannot write to /proc"), err
    assert "Traceback" not in err and "[edgecnn]" not in err  # refused before calibration or any model
    assert time.perf_counter() - started < 60


@pytest.mark.quick
def test_the_lock_stops_a_second_writer_of_the_same_folder(tmp_path):
    target = tmp_path / "variant"
    with atomic_folder(target) as work:
        (work / "a").write_text("first")
        with pytest.raises(ConcurrentWrite, match="is being written by another edgecnn process"):
            with atomic_folder(target, replace=True):
                pass
    assert (target / "a").read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["variant"]  # no lock, no partial folder left


def test_two_exports_of_one_variant_at_once_one_wins_and_the_other_stops_cleanly(tmp_path):
    target = tmp_path / "export" / "same"
    first = export("--out", target, "--force", "--formats", "onnx", "--no-validate")
    second = export("--out", target, "--force", "--formats", "onnx", "--no-validate")
    results = [finish(first), finish(second)]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 1], results
    loser = next(err for code, _, err in results if code == 1)
    assert loser.strip().splitlines()[-1].startswith("edgecnn: cannot write: ") and \
        "is being written by another edgecnn process" in loser, loser
    assert "Traceback" not in loser
    from edgecnn.schema.manifest import open_export

    manifest = open_export(target)  # the winner's complete export, through the gate
    assert [a.path for a in manifest.artifacts] == ["model.onnx"]
    assert sorted(p.name for p in target.parent.iterdir()) == ["same"]


@pytest.fixture
def small_disk(tmp_path):
    """A tmpfs just large enough for an earlier export; where mounting is not allowed, one skip line."""
    mount = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
    mount.mkdir()
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("disk-full test needs a tmpfs mount (root): not allowed here")
    yield mount
    subprocess.run(["umount", str(mount)], capture_output=True)


def test_a_disk_that_fills_up_gives_one_line_and_leaves_the_earlier_export_byte_identical(tmp_path, small_disk):
    earlier = tmp_path / "earlier"
    code, _, err = finish(export("--out", earlier, "--formats", "onnx", "--no-validate"))
    assert code == 0, err
    size = sum(p.stat().st_size for p in earlier.rglob("*") if p.is_file())
    # room for the earlier export and a little more, not for a second model.onnx
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size + 512 * 1024}", "tmpfs", str(small_disk)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"disk-full test needs a tmpfs mount: {result.stderr.strip() or 'not allowed here'}")
    target = small_disk / "variant"
    shutil.copytree(earlier, target)
    before = tree_digest(target)

    code, out, err = finish(export("--out", target, "--force", "--formats", "onnx", "--no-validate"))
    assert code == 1, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("edgecnn: cannot write: no space left on the device of ") and \
        "the earlier export is unchanged" in last, err
    assert "Traceback" not in err and "Errno" not in err
    assert tree_digest(target) == before
    assert sorted(p.name for p in small_disk.iterdir()) == ["variant"]  # no partial folder, no lock
