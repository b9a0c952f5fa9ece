"""Admission by capacity: what this machine sustains with this model, measured at start-up.

`measure` streams a few seconds of a voiced signal through two concurrent sessions per kind
of session (the aligned crop, and each paste mode on the bundled photo) as fast as the engine
goes, and records the frames a second they made in all, R. A live session of that kind uses
25 / R of the machine; `Capacity.admit` refuses a session that would take the admitted ones' sum past
`headroom` (docs/BENCHMARKS.md: on 2 cores, two sessions at 25 fps use ~0.8 of what one
session's throughput shows, and a third drops all three below real time).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from rtavatar import FPS, SAMPLE_RATE
from rtavatar.photo.options import PASTE_MODES, PasteOptions

log = logging.getLogger(__name__)
CROP = "crop"  # a session without paste-back
HEADROOM = 0.85


def kind_of(paste: PasteOptions | None) -> str:
    return CROP if paste is None else paste.mode


def voiced_signal(seconds: float) -> np.ndarray:
    """A speech-like test signal: 140 Hz bursts with pauses (no TTS needed)."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (0.3 * np.sin(2 * np.pi * 140 * t) * (np.sin(2 * np.pi * 1.5 * t) > -0.3)).astype(np.float32)


def measure(avatar: object, portrait: str, seconds: float = 3.0, concurrent: int = 2) -> dict[str, float]:
    """Frames a second this machine makes, in all, with `concurrent` sessions of each kind (see
    the module docstring). Measured with several at once because one alone overstates what
    they share: on 2 cores one warp session ran at 92 fps, yet three ran at 21 fps each while
    speaking (docs/BENCHMARKS.md)."""
    import threading

    audio = voiced_signal(seconds)
    rates = {}
    for kind in (CROP, *PASTE_MODES):
        paste = None if kind == CROP else PasteOptions(mode=kind)
        for _ in range(2):  # the first pass also sets up the kernels of every chunk shape
            sessions = [avatar.session(portrait, paste=paste, seed=i) for i in range(concurrent)]  # type: ignore[attr-defined]
            counts = [0] * concurrent

            def read(i: int) -> None:
                for _ in sessions[i].frames(timeout=120):
                    counts[i] += 1

            t0 = time.perf_counter()
            readers = [threading.Thread(target=read, args=(i,)) for i in range(concurrent)]
            for s, r in zip(sessions, readers):
                s.push_audio(audio)
                s.close()
                r.start()
            for r in readers:
                r.join()
            elapsed = time.perf_counter() - t0
        rates[kind] = round(sum(counts) / max(elapsed, 1e-9), 1)
    log.info("capacity: frames a second this machine makes with %d concurrent sessions, by kind: %s", concurrent, rates)
    return rates


@dataclass
class Capacity:
    """The admitted sessions' share of the machine, by kind (thread-safe)."""

    rates: dict[str, float] = field(default_factory=dict)  # empty: no measurement, only max_sessions applies
    headroom: float = HEADROOM
    _load: dict[int, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def cost(self, kind: str) -> float:
        r = self.rates.get(kind)
        return FPS / r if r else 0.0

    @property
    def load(self) -> float:
        return round(sum(self._load.values()), 3)

    def sessions_of(self, kind: str) -> int | None:
        """How many sessions of one kind fit (None: not measured)."""
        c = self.cost(kind)
        return int(self.headroom / c) if c else None

    def admit(self, sid: int, kind: str) -> str | None:
        """Admit session `sid`, or say why not (the admitted ones would fall below real time)."""
        with self._lock:
            c = self.cost(kind)
            if c and self._load and sum(self._load.values()) + c > self.headroom:
                return (f"server busy: at capacity ({len(self._load)} live session(s) use {sum(self._load.values()):.2f} of "
                        f"this machine; one more ({kind}) would drop them below real time); retry in a few seconds")
            self._load[sid] = c
            return None

    def release(self, sid: int) -> None:
        with self._lock:
            self._load.pop(sid, None)
