"""Folders that appear complete or not at all: build in a hidden sibling, then rename into place."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from edgecnn.util.errors import UsageError


def check_writable(folder: Path) -> None:
    existing = folder.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"cannot write to {folder}: {existing} is not a writable folder")


def work_dir(target: Path) -> Path:
    """A hidden, empty sibling of `target` with ordinary permissions."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
        umask = os.umask(0)
        os.umask(umask)
        work.chmod(0o777 & ~umask)  # mkdtemp makes it private; the result is an ordinary folder
        return work
    except OSError as err:
        raise UsageError(f"cannot write to {target.parent}: {err.strerror or err}") from None


def replace_folder(work: Path, target: Path) -> None:
    """Rename `work` to `target`; an earlier `target` is removed only once the new one is in place."""
    old = None
    if target.exists():
        old = target.parent / f".{target.name}.old-{os.getpid()}"
        target.rename(old)
    try:
        work.rename(target)
    except BaseException:
        if old is not None:
            old.rename(target)  # put the earlier one back
        raise
    if old is not None:
        shutil.rmtree(old)


def replace_file(path: Path, write) -> None:
    """Write through `write(temporary_path)`, then rename over `path`: never a half-written file."""
    temporary = path.with_name(f".{path.name}.partial")
    try:
        write(temporary)
        temporary.replace(path)
    finally:
        temporary.unlink(missing_ok=True)
