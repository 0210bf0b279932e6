"""An exclusive lock, held for a block, on a path: processes on one machine that prepare the same
folder (parallel sweep runs preprocessing one target) take turns instead of writing it at once.

The lock file lives in the system's temporary folder, named by a hash of the path, so that the
folder itself gains no file (a failed command leaves nothing behind in the user's data folders).
Processes on several machines (the shards of a sweep, `experiments/shards.py`) share locks through
a folder on their shared file system named by the environment variable SUPREM_LOCK_DIR (read at
each lock); flock() then needs a file system that passes it between nodes (NFSv4, Lustre mounted
with `-o flock`, GPFS, BeeGFS).
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Iterator, Union

LOCK_DIR = "suprem_nnunet_locks"
LOCK_DIR_VAR = "SUPREM_LOCK_DIR"


def lock_path(path: Union[str, Path]) -> Path:
    digest = hashlib.sha1(str(Path(path).absolute()).encode()).hexdigest()[:16]
    shared = os.environ.get(LOCK_DIR_VAR)
    return (Path(shared) if shared else Path(tempfile.gettempdir()) / LOCK_DIR) / f"{digest}.lock"


@contextlib.contextmanager
def file_lock(path: Union[str, Path]) -> Iterator[None]:
    """Block until this process holds the lock of `path` (which need not exist)."""
    lock = lock_path(path)
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
