"""keep_freed_memory: a training process stops faulting its activations in every step."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

FAULTS = """
import resource, sys, torch
if sys.argv[1] == "keep":
    from s3fn.train.allocator import keep_freed_memory
    assert keep_freed_memory()
for _ in range(2):  # the first blocks are faulted in either way (a small allocation that lands
    torch.empty(6 << 20).fill_(1.0)  # in the first freed block can push the second elsewhere)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    torch.empty(6 << 20).fill_(1.0)  # freed at the end of each statement
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def page_faults(mode: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", FAULTS, mode], capture_output=True, text=True, check=True
    )
    return int(done.stdout.strip())


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only"
)
def test_freed_activations_are_reused_without_page_faults():
    block = (24 << 20) // 4096  # pages of one 24 MB tensor
    assert page_faults("default") > 5 * block  # most of the ten blocks mapped afresh
    assert page_faults("keep") <= block + 64  # at most the first one faulted in
