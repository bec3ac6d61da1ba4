"""Trimaps stored apart from their dataset, one PNG per case, in a folder or a zip.

The Medical Matting release ships its trimaps this way: ``trimap_brain.zip`` holds
``trimap/case01.png`` ... ``trimap/case39.png``.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Iterable

import numpy as np

from medmat.errors import MedmatError
from medmat.io.images import read_png_array, read_trimap, trimap_from_array


def read_trimaps(path: str | os.PathLike, ids: Iterable[str]) -> dict[str, np.ndarray]:
    """Read the trimap of every case in ``ids``.

    Args:
        path: a folder holding ``<id>.png``, or a zip holding ``<id>.png`` or ``<folder>/<id>.png``.
        ids: the case ids whose trimaps are needed; trimaps of other cases are ignored.

    Returns:
        ``{id: uint8 (H, W)}`` (0 background, 128 unknown, 255 foreground, resampled values kept).
        A case without a trimap is an error naming the first missing ids.
    """
    path = os.fspath(path)
    ids = list(ids)
    if os.path.isdir(path):
        found = {case: os.path.join(path, f"{case}.png") for case in ids}
        _require_all(ids, {case for case, file in found.items() if os.path.isfile(file)}, path)
        return {case: read_trimap(file) for case, file in found.items()}
    if not os.path.exists(path):
        raise MedmatError("trimap folder or zip not found", path)
    return _read_zipped_trimaps(path, ids)


def _read_zipped_trimaps(path: str, ids: list[str]) -> dict[str, np.ndarray]:
    try:
        with zipfile.ZipFile(path) as archive:
            members = _members_by_id(archive.namelist())
            _require_all(ids, set(members) & set(ids), path)
            return {case: _decode_member(archive, members[case], path) for case in ids}
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise MedmatError(f"not a readable zip of trimaps ({exc})", path) from None


def _members_by_id(names: list[str]) -> dict[str, str]:
    # A member `trimap/case01.png` answers to `trimap/case01` and to `case01`; the full path
    # wins when both could match, so nested ids (LIDC's patient/nodule/slice) resolve too.
    by_id = {}
    for name in names:
        if not name.lower().endswith(".png") or name.endswith("/"):
            continue
        stem = name[: -len(".png")]
        by_id.setdefault(stem.split("/", 1)[-1], name)
    for name in names:
        if name.lower().endswith(".png"):
            by_id[name[: -len(".png")]] = name
    return by_id


def _decode_member(archive: zipfile.ZipFile, member: str, path: str) -> np.ndarray:
    where = f"{path}:{member}"
    return trimap_from_array(read_png_array(io.BytesIO(archive.read(member)), where), where)


def _require_all(ids: list[str], present: set[str], path: str) -> None:
    missing = [case for case in ids if case not in present]
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise MedmatError(f"no trimap for {len(missing)} case(s): {shown}", path)
