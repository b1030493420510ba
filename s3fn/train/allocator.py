"""Keep freed activation memory in the process instead of returning it to the OS each step.

glibc serves blocks above its mmap threshold (32 MB at most, dynamic below that) with fresh
mappings and unmaps them on free, so every training step faults its largest activations in
again, page by page. Raising the threshold to its maximum and never trimming the heap keeps
that memory mapped for the next step: 5-10 % faster CPU training steps here
(benchmarks/NOTES.md). The cost is that a process does not shrink after its peak.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_MAX = 32 << 20  # glibc's ceiling on 64-bit
_NEVER_TRIM = (1 << 31) - 1


def keep_freed_memory() -> bool:
    """Tune glibc's malloc as above for the rest of the process; False (nothing done) where
    the C library is not glibc. Meant for processes that train, such as `s3fn train`."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    mallopt = libc.mallopt
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(
        mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX) and mallopt(_M_TRIM_THRESHOLD, _NEVER_TRIM)
    )
