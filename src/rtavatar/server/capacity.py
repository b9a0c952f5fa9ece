"""Admission by capacity: what this machine sustains with this model, measured at start-up.

`live_fit` finds how many live sessions keep real time here, the way clients use them: once the
server runs, k WebSocket clients of the default kind (paste mode warp on the bundled photo),
each pushing 6 s of the bundled speech at real-time pace in 20 ms pushes, for k = 1, 2, ...
until one's last frame comes more than 0.6 s after its last audio (a session that keeps
real time here ends 0.3-0.45 s after it; through the real transport: its per-frame work is part
of a session's cost). If k fit and k + 1 do not, one session takes 1 / (k + 0.5) of the
machine. Other kinds are scaled by their throughput against the default's (`measure`: a few
seconds each, as fast as the engine goes). A
throughput figure alone overstates live capacity: on 2 cores one warp session made 92 fps and
two concurrent ones 106, yet three live sessions got 17.5-21 fps each (docs/BENCHMARKS.md).
`Capacity.admit` refuses a session that would take the admitted ones' sum past 1.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from rtavatar import SAMPLE_RATE
from rtavatar.photo.options import PASTE_MODES, PasteOptions

log = logging.getLogger(__name__)
CROP = "crop"  # a session without paste-back
DEFAULT = PasteOptions().mode


def kind_of(paste: PasteOptions | None) -> str:
    return CROP if paste is None else paste.mode


def speech(seconds: float) -> np.ndarray:
    """The bundled sample speech, looped to `seconds`. Real speech, not a tone: the warp's cost
    depends on how many different openings the mouth takes (each new one is a new render), and
    a synthetic burst signal made three live sessions look sustainable when they were not."""
    from rtavatar.assets import SAMPLE_SPEECH
    from rtavatar.media import read_audio

    one = read_audio(SAMPLE_SPEECH)
    return np.tile(one, int(np.ceil(seconds * SAMPLE_RATE / len(one))))[: int(seconds * SAMPLE_RATE)].astype(np.float32)


def live_fit(url: str, portrait: bytes, token: str | None = None, seconds: float = 6.0, most: int = 4,
             max_lag: float = 0.6) -> int:
    """How many live WebSocket sessions of the default kind keep real time together on the server
    at `url` (0 if not even one): k clients, each pushing `seconds` of the bundled speech at
    real-time pace in 20 ms pushes, for k = 1, 2, ... until one's last frame comes more than
    `max_lag` s after its last audio. Through the real transport: the server's own per-frame
    work (JPEG, the event loop) is part of what a session costs."""
    from rtavatar.client import AvatarClient

    audio = speech(seconds)
    fit = 0
    for k in range(1, most + 1):
        lags: list[float] = [float("inf")] * k

        def client(i: int) -> None:
            try:
                run_client(i)
            except Exception as e:  # noqa: BLE001 - refused (--max-sessions) or failed: this k does not fit
                log.info("capacity: probe client %d: %s", i, e)

        def run_client(i: int) -> None:
            with AvatarClient(url, token=token) as c:
                c.start(portrait, live=False, seed=i)
                t0, last_push = time.perf_counter(), 0.0
                for n, j in enumerate(range(0, len(audio), 320)):
                    time.sleep(max(0.0, t0 + n * 0.02 - time.perf_counter()))
                    c.push(audio[j : j + 320])
                    last_push = time.perf_counter()
                c.end()
                last = last_push
                for _ in c.frames(timeout=60):
                    last = time.perf_counter()
                lags[i] = last - last_push

        threads = [threading.Thread(target=client, args=(i,)) for i in range(k)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        log.info("capacity: %d live session(s): final lag %s s", k, [round(x, 2) for x in lags])
        if max(lags) > max_lag:
            break
        fit = k
    return fit


def throughput(avatar: object, portrait: str, paste: PasteOptions | None, seconds: float = 3.0) -> float:
    """Frames a second one session of a kind makes as fast as the engine goes."""
    audio = speech(seconds)
    for _ in range(2):  # the first pass also sets up the kernels of every chunk shape
        s = avatar.session(portrait, paste=paste, seed=0)  # type: ignore[attr-defined]
        s.push_audio(audio)
        s.close()
        t0 = time.perf_counter()
        n = sum(1 for _ in s.frames(timeout=120))
    return n / max(time.perf_counter() - t0, 1e-9)


def costs_of(rates: dict[str, float], fit: int) -> dict[str, float]:
    """Each kind's share of the machine per live session, from each kind's throughput and how
    many live sessions of the default kind fit (see the module docstring)."""
    share = 1.0 / (fit + 0.5) if fit else 1.0
    return {kind: round(share * rates[DEFAULT] / r, 3) for kind, r in rates.items()}


def measure(avatar: object, portrait: str) -> dict[str, float]:
    """Each kind's throughput on this machine, frames a second (the live fit comes later, over
    the running server: `live_fit`)."""
    rates = {kind: round(throughput(avatar, portrait, None if kind == CROP else PasteOptions(mode=kind)), 1)
             for kind in (CROP, *PASTE_MODES)}
    log.info("capacity: one session's frames a second by kind, as fast as the engine goes: %s", rates)
    return rates


@dataclass
class Capacity:
    """The admitted sessions' share of the machine, by kind (thread-safe)."""

    costs: dict[str, float] = field(default_factory=dict)  # one live session's share by kind; empty: only max_sessions applies
    _load: dict[int, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def load(self) -> float:
        return round(sum(self._load.values()), 3)

    def sessions_of(self, kind: str) -> int | None:
        """How many sessions of one kind fit (None: not measured)."""
        c = self.costs.get(kind)
        return int(1.0 / c + 1e-9) if c else None

    def admit(self, sid: int, kind: str) -> str | None:
        """Admit session `sid`, or say why not (the admitted ones would fall below real time)."""
        with self._lock:
            c = self.costs.get(kind, 0.0)
            used = sum(self._load.values())
            if c and self._load and used + c > 1.0 + 1e-9:
                return (f"server busy: at capacity ({len(self._load)} live session(s) use {used:.2f} of this machine; "
                        f"one more ({kind}) would drop them below real time); retry in a few seconds")
            self._load[sid] = c
            return None

    def release(self, sid: int) -> None:
        with self._lock:
            self._load.pop(sid, None)


def calibrate(cap: Capacity, rates: dict[str, float], url: str, portrait: bytes, token: str | None = None,
              ready: Callable[[], bool] = lambda: True, most: int = 4) -> threading.Thread:
    """In a background thread, once `ready()`: the live fit over the running server at `url`,
    then `cap.costs` (until then only --max-sessions applies)."""

    def run() -> None:
        while not ready():
            time.sleep(0.1)
        try:
            fit = live_fit(url, portrait, token, most=most)
        except Exception as e:  # noqa: BLE001 - a failed probe leaves admission to --max-sessions, said so
            log.warning("capacity: the live probe failed (%s); admission by --max-sessions only", e)
            return
        cap.costs = costs_of(rates, fit)
        log.info("capacity: %d live %s session(s) keep real time; a session's share of the machine by kind: %s",
                 fit, DEFAULT, cap.costs)

    t = threading.Thread(target=run, name="capacity-probe", daemon=True)
    t.start()
    return t
