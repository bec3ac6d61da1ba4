"""Restricted unpickling for released datasets.

Released matting datasets (the Medical Matting release among them) are pickles. ``pickle.load``
on such a file would run any code it carries, so medmat never calls it. :func:`safe_load` admits
only what a dict of numpy arrays needs: numpy arrays, dtypes and scalars, and plain containers
(dict, list, tuple, str, bytes, numbers, bool, None). Anything else is refused before it runs.
"""

from __future__ import annotations

import io
import os
import pickle
import zipfile

import numpy as np

from medmat.errors import MedmatError


def _latin1_encode(text, encoding="latin1"):
    # Protocol-2 numpy pickles store raw bytes as `codecs.encode(str, 'latin1')`; only that
    # exact use is admitted, not the codec machinery in general.
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError("codecs.encode is admitted only for latin1 text")
    return text.encode("latin1")


def _numpy_reconstruct(cls, shape, dtype_code):
    if cls is not np.ndarray:
        raise pickle.UnpicklingError(f"refusing to reconstruct {cls!r}")
    return np.ndarray.__new__(cls, shape, dtype_code)


def _numpy_scalar(dtype, data=None):
    from numpy._core.multiarray import scalar

    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise pickle.UnpicklingError("refusing a numpy scalar of object dtype")
    return scalar(dtype, data) if data is not None else scalar(dtype)


def _numpy_dtype(spec, align=False, copy=False):
    dtype = np.dtype(spec, align, copy)
    if dtype.hasobject:
        raise pickle.UnpicklingError("refusing an object dtype")
    return dtype


_ALLOWED = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _numpy_dtype,
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("codecs", "encode"): _latin1_encode,
    ("_codecs", "encode"): _latin1_encode,
    ("builtins", "dict"): dict,
    ("builtins", "list"): list,
    ("builtins", "tuple"): tuple,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "bytearray"): bytearray,
    ("collections", "OrderedDict"): dict,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"the pickle asks for {module}.{name}, which is not a numpy array or plain "
                "container; refused without running it"
            ) from None

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("persistent ids are not admitted")


def safe_loads(data: bytes, source: str | os.PathLike = "<bytes>"):
    """Unpickle ``data`` admitting only numpy arrays and plain containers.

    Raises :class:`MedmatError` naming ``source`` for a refused global, a truncated or corrupt
    stream, or an object array.
    """
    try:
        obj = _RestrictedUnpickler(io.BytesIO(data)).load()
    except pickle.UnpicklingError as exc:
        raise MedmatError(f"unsafe or corrupt pickle: {exc}", source) from None
    except (EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError, MemoryError) as exc:
        raise MedmatError(f"truncated or corrupt pickle ({type(exc).__name__}: {exc})", source) from None
    _reject_object_arrays(obj, source)
    return obj


def _reject_object_arrays(obj, source, depth=0):
    if depth > 32:
        raise MedmatError("pickle nests containers more than 32 deep", source)
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            raise MedmatError("pickle holds an object array; refused", source)
    elif isinstance(obj, dict):
        for key, value in obj.items():
            _reject_object_arrays(key, source, depth + 1)
            _reject_object_arrays(value, source, depth + 1)
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for value in obj:
            _reject_object_arrays(value, source, depth + 1)


def safe_load(path: str | os.PathLike):
    """Read a ``.pkl`` file, or a ``.zip`` holding exactly one ``.pkl``, with :func:`safe_loads`."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise MedmatError("file not found", path)
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                members = [m for m in archive.namelist() if m.endswith((".pkl", ".pickle"))]
                if len(members) != 1:
                    raise MedmatError(f"zip must hold exactly one .pkl file, found {len(members)}", path)
                data = archive.read(members[0])
        except (zipfile.BadZipFile, EOFError, OSError) as exc:
            raise MedmatError(f"corrupt zip archive ({exc})", path) from None
        return safe_loads(data, f"{path}:{members[0]}")
    if path.endswith(".zip"):
        raise MedmatError("not a valid zip archive (truncated or corrupt)", path)
    with open(path, "rb") as handle:
        data = handle.read()
    return safe_loads(data, path)
