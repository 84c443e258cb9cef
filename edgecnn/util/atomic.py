"""Files and folders that appear complete or not at all.

`atomic_folder(target)` is the one way edgecnn writes a folder: it takes a lock beside the target (a second
writer of the same folder stops at once with one line), builds everything in a hidden sibling, and renames
it into place only when the body finished. On any failure, an interrupt or a full disk, the hidden
sibling is removed and an earlier folder of that name is left byte for byte as it was.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from edgecnn.util.errors import ConcurrentWrite, DiskFull, UsageError

# Free bytes below which a failure while writing is put down to a full disk: converters wrap the
# operating system's ENOSPC in their own errors (RuntimeError from torch's zip writer, for one).
NEARLY_FULL_BYTES = 1 << 20
_DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}


def _existing_ancestor(folder: Path) -> Path:
    existing = folder.absolute()
    while not existing.exists():
        existing = existing.parent
    return existing


def check_writable(folder: Path) -> None:
    """Refuse a folder that cannot be written, by creating and removing a real entry in it (or in the
    nearest existing ancestor). Permission bits alone lie: root passes `os.access` on /proc."""
    existing = _existing_ancestor(folder)
    if not existing.is_dir():
        raise UsageError(f"cannot write to {folder}: {existing} is not a folder")
    try:
        probe = tempfile.mkdtemp(prefix=".edgecnn-write-check-", dir=existing)
        os.rmdir(probe)
    except OSError as err:
        raise UsageError(f"cannot write to {folder}: {existing}: {err.strerror or err}") from None


def is_disk_full(err: BaseException, where: Path) -> bool:
    """Whether `err` (raised while writing under `where`) comes from a full disk or quota."""
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in _DISK_FULL_ERRNOS:
            return True
        seen = seen.__cause__ or seen.__context__
    try:
        return shutil.disk_usage(_existing_ancestor(where)).free < NEARLY_FULL_BYTES
    except OSError:
        return False


def _work_dir(target: Path) -> Path:
    """A hidden, empty sibling of `target` with ordinary permissions."""
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    umask = os.umask(0)
    os.umask(umask)
    work.chmod(0o777 & ~umask)  # mkdtemp makes it private; the result is an ordinary folder
    return work


@contextmanager
def folder_lock(target: Path) -> Iterator[None]:
    """An exclusive lock on `target`'s name, held by this process until the block ends."""
    lock_path = target.parent / f".{target.name}.lock"
    while True:
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            if err.errno in _DISK_FULL_ERRNOS:
                raise DiskFull(f"no space left on the device of {target.parent}; nothing was written") from None
            raise UsageError(f"cannot write to {target.parent}: {err.strerror or err}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ConcurrentWrite(
                f"{target} is being written by another edgecnn process right now; "
                "wait for it to finish, or write elsewhere with --out"
            ) from None
        try:  # the holder before us may have removed the file after we opened it: lock the current one
            if os.stat(lock_path).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        yield
    finally:
        try:
            lock_path.unlink()
        except OSError:
            pass
        os.close(fd)


@contextmanager
def atomic_folder(target: Path, replace: bool = False) -> Iterator[Path]:
    """Yield an empty hidden folder; when the block ends without error it becomes `target`.

    `replace`: an existing `target` is swapped out (and removed) once the new one is in place; without it
    an existing `target` is refused. A full disk becomes one `DiskFull` line.
    """
    if target.name in ("", ".", ".."):
        raise UsageError(f"{target} names no folder")
    created = [p for p in [target.parent, *target.parent.parents] if not p.exists()]  # removed again on failure
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"cannot write to {target.parent}: {err.strerror or err}") from None
    try:
        with _locked_swap(target, replace) as work:
            yield work
    except BaseException:
        for folder in created:  # innermost first; a folder something else has written into stays
            try:
                folder.rmdir()
            except OSError:
                break
        raise


@contextmanager
def _locked_swap(target: Path, replace: bool) -> Iterator[Path]:
    with folder_lock(target):
        _clear_leftovers(target)
        if target.exists() and not replace:
            raise UsageError(f"{target} already exists; pass --force to replace it")
        if target.exists() and not target.is_dir():
            raise UsageError(f"{target} exists and is not a folder")
        work = None
        try:
            work = _work_dir(target)
            yield work
            _swap_into_place(work, target)
        except BaseException as err:
            # judged before the partial folder goes: removing it frees the space
            full = isinstance(err, Exception) and not isinstance(err, UsageError) and is_disk_full(err, target)
            if work is not None:
                shutil.rmtree(work, ignore_errors=True)
            if full:
                raise DiskFull(
                    f"no space left on the device of {target.parent} while writing {target.name}; "
                    f"nothing was written" + (" and the earlier export is unchanged" if target.exists() else "")
                ) from None
            raise


def _clear_leftovers(target: Path) -> None:
    """What a writer of `target` killed outright (SIGKILL, a lost machine) left beside it: its partial
    folder goes, and an earlier folder it had moved aside comes back if nothing replaced it. Only called
    under the lock, so no live writer owns them."""
    for partial in target.parent.glob(f".{target.name}.partial-*"):
        shutil.rmtree(partial, ignore_errors=True)
    for old in sorted(target.parent.glob(f".{target.name}.old-*")):
        if not target.exists():
            old.rename(target)
        else:
            shutil.rmtree(old, ignore_errors=True)


def _swap_into_place(work: Path, target: Path) -> None:
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


def replace_file(path: Path, write: Callable[[Path], object]) -> None:
    """Write through `write(temporary_path)`, then rename over `path`: never a half-written file."""
    temporary = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        write(temporary)
        temporary.replace(path)
    except Exception as err:
        if is_disk_full(err, path):
            raise DiskFull(
                f"no space left on the device of {path.parent} while writing {path.name}; {path.name} is unchanged"
            ) from None
        raise
    finally:
        temporary.unlink(missing_ok=True)
