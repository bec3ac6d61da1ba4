"""Atomic writes: an interrupted run never leaves a half-written output or checkpoint.

Everything medmat writes goes to a temporary file in the destination folder, is flushed to
disk, and is then renamed over the destination (``os.replace`` is atomic on POSIX and Windows).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically.

    Use it for writers that want a file name (``nibabel.save``, ``PIL.Image.save``,
    ``torch.save``). On an exception the temporary file is removed and ``path`` is untouched.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    base = os.path.basename(path)
    # Keep the real suffix last so writers that choose a format by extension (.nii.gz, .png) work.
    handle, temporary = tempfile.mkstemp(prefix=f".{base}.", suffix=".tmp-" + base, dir=folder)
    os.close(handle)
    # mkstemp creates the file 0600; give the result the permissions a plain open() would.
    os.chmod(temporary, 0o666 & ~_current_umask())
    try:
        yield temporary
        with open(temporary, "rb+") as written:
            os.fsync(written.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as temporary:
        with open(temporary, "wb") as handle:
            handle.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")
