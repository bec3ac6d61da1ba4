"""The C allocator's settings for training (``train.keep_freed_memory``).

A training step allocates and frees the same few hundred activation and gradient buffers every
step. glibc's malloc serves a block over its mmap threshold with fresh pages from the kernel and
hands large freed regions at the top of its heap back (trimming); each fresh page then costs a
page fault when first written. A `lite` bf16 step on 2 cores took 12,700-20,200 minor page faults
and 23-50 ms of kernel time; with the threshold fixed at 32 MiB and no trimming, 50-510 faults
and under 2 ms (``benchmarks/step_faults.py``). Setting either alone ends glibc's dynamic
threshold and was worse than its defaults in a trial (with the ``MALLOC_*_`` environment
variables), so both are set together.

The cost is memory the process keeps after its peak instead of returning it, which a training
process reaches every step anyway. Numbers are unaffected: only where the buffers come from.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

LOG = logging.getLogger("medmat.engine")

#: glibc's mallopt parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: Blocks up to this size come from the heap: glibc's largest mmap threshold on 64-bit systems.
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024
#: Freed memory at the heap's top is returned to the kernel only beyond this (the largest C int).
TRIM_THRESHOLD_BYTES = 2**31 - 1


def keep_freed_memory() -> bool:
    """Set glibc malloc's mmap threshold to 32 MiB and stop heap trimming, for this process.

    Returns:
        True when both settings took; False on a C library without ``mallopt`` (macOS, Windows,
        musl) or when glibc refused one (logged once at debug level: training runs either way).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        LOG.debug("medmat: this C library has no mallopt; the allocator keeps its defaults")
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # Setting either stops glibc's dynamic threshold, so the one is no use without the other.
    took = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1
    if not took:
        LOG.debug("medmat: mallopt refused the allocator settings; it keeps its defaults")
    return took
