"""Small shared helpers: logging set-up, seeding, atomic writes."""

from __future__ import annotations

import logging
import os
import random
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

log = logging.getLogger("rtavatar")


def setup_logging(verbose: bool = False) -> None:
    """Configure the root rtavatar logger once (CLI entry point calls this)."""
    level = logging.DEBUG if verbose else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")


def seed_everything(seed: int) -> np.random.Generator:
    """Seed python, numpy and torch (if imported); return a numpy Generator for local use."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:  # pragma: no cover - torch is a hard dependency, but keep data tools importable
        pass
    return np.random.default_rng(seed)


def derive_seed(*parts: int | str) -> int:
    """A stable 63-bit seed from several parts (independent of PYTHONHASHSEED)."""
    seq = np.random.SeedSequence([abs(hash_str(p)) if isinstance(p, str) else int(p) for p in parts])
    return int(seq.generate_state(2, dtype=np.uint32).astype(np.uint64) @ np.array([1 << 31, 1], dtype=np.uint64))


def hash_str(s: str) -> int:
    h = 1469598103934665603  # FNV-1a, stable across processes
    for b in s.encode():
        h = ((h ^ b) * 1099511628211) % (1 << 63)
    return h


@contextmanager
def atomic_write(path: str | Path, mode: str = "wb") -> Iterator:
    """Write to a temp file in the same directory, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            yield f
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file normal permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def die_with_parent() -> None:
    """Worker-process initializer: the kernel kills this process when its parent dies (Linux
    PR_SET_PDEATHSIG), so a killed command never leaves its pool running."""
    import signal

    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the pool's own shutdown is all there is
        return
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)


def remove_temp_debris(root: Path, pattern: str = ".*.tmp*") -> int:
    """Delete temp files a killed run left under `root` (the atomic writers' hidden names)."""
    n = 0
    for p in root.rglob(pattern):
        if p.is_file():
            p.unlink(missing_ok=True)
            n += 1
    if n:
        log.info("removed %d temporary file(s) left by an interrupted run under %s", n, root)
    return n
