"""Keep the memory a training step frees for the next step, instead of handing it back to the kernel.

Why: PyTorch takes its CPU tensors from the C library's malloc. glibc (Linux) serves a block above its mmap
threshold with a fresh mapping and unmaps it when it is freed, and gives the top of its heap back to the kernel
once more than the trim threshold is free there. Both thresholds start at 128 KiB and glibc raises them as
mapped blocks are freed, but a training step that allocates and frees the same activations every step still
takes many of its pages from the kernel again each step, and every new page is a page fault the kernel fills
with zeros. Measured on a 2-core AMD EPYC, one thread (README, "Where the time goes"): a `vae-binarized-mnist`
step made 9,769 minor page faults and spent 34.6 ms in the kernel, a gated PixelCNN step 59,552 and 200 ms.

``keep_freed_memory`` fixes the mmap threshold at glibc's largest (32 MiB on 64-bit systems: larger blocks
are still mapped and unmapped), stops the trimming, and pads each growth of the heap, so the pages stay in the
process. The price: the process keeps the resident memory of its largest step until it exits, which a training
or evaluation process reaches again every step anyway.

It changes nothing when the C library is not glibc (macOS, Windows, musl), when ``LD_PRELOAD`` brings another
allocator (jemalloc, tcmalloc, mimalloc), when the environment already sets one of glibc's own
``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_`` or ``MALLOC_TOP_PAD_`` (the user's tuning wins), or
when ``GENLAB_MALLOC=system``.
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform

# mallopt's parameters (glibc's malloc.h)
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
MMAP_THRESHOLD = 32 << 20  # glibc's ceiling for the mmap threshold on 64-bit systems (HEAP_MAX_SIZE / 2)
NEVER_TRIM = 2**31 - 1  # mallopt takes a C int: trim only when 2 GiB at the heap's top are free
TOP_PAD = 64 << 20  # grow the heap 64 MiB at a time; pages not yet touched cost no resident memory
GLIBC_TUNING = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")

@functools.cache
def keep_freed_memory() -> str:
    """Tune glibc's malloc as the module docstring says, once per process (later calls return the first result).

    Returns:
        what was done, for logs and tests: "kept", or why not ("not glibc", "LD_PRELOAD allocator",
        "MALLOC_* set in the environment", "GENLAB_MALLOC=system", "mallopt refused").
    """
    return _tune()


def _tune() -> str:
    if os.environ.get("GENLAB_MALLOC", "").lower() == "system":
        return "GENLAB_MALLOC=system"
    if any(name in os.environ for name in GLIBC_TUNING):
        return "MALLOC_* set in the environment"
    if "malloc" in os.environ.get("LD_PRELOAD", ""):
        return "LD_PRELOAD allocator"
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return "not glibc"
    libc = ctypes.CDLL("libc.so.6")
    settings = ((M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_TRIM_THRESHOLD, NEVER_TRIM), (M_TOP_PAD, TOP_PAD))
    if not all(libc.mallopt(param, value) == 1 for param, value in settings):
        return "mallopt refused"
    return "kept"
