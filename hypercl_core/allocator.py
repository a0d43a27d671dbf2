"""Keep freed CPU tensor memory in the process instead of handing it back to the kernel.

PyTorch's CPU tensors come from malloc. glibc serves blocks above its mmap
threshold with fresh pages and trims the heap top on free, so every training
step that allocates a megabyte-sized tensor (a hypernetwork's output, its
gradient, the regularizer's buffers) takes a page fault per 4 KiB page on
first touch: about 600 faults per step on SplitMNIST's hypernetwork, a sixth
of its forward and backward. Raising both thresholds keeps those pages mapped
and reused; the process's resident memory then stays at its peak, which a
training process reaches in its first steps anyway. CUDA memory has its own
caching allocator and is unaffected. Elsewhere than glibc this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 2**20  # the largest glibc accepts on 64-bit: above it a block is mapped on its own
TRIM_THRESHOLD = 1 << 30


@functools.cache
def keep_freed_memory() -> bool:
    """Once per process; True where glibc took both settings."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to set
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
