"""Abuse probes of `rtavatar serve` (issue 31, findings 1-8), against a real server.

    python scripts/bench/probe_server.py [--checkpoint RUN] [--no-sigint] [--log server.log]
        [--out docs/results/engine/probe_server_cpu.json]

About 4 minutes on 2 cores. It first waits (up to --load-wait s) for the 1-min load to drop
below --max-load, since the frame-rate and latency checks need a reasonably free CPU.

Starts `rtavatar serve --host 127.0.0.1 --port P --max-sessions 4` in a subprocess (the
shipped model, else the random weights serve falls back to; it measures capacity at
start-up, so readiness is awaited on /healthz with a deadline) and repeats each finding of
issue 31 against it, loopback only, bounded in count and time. The server runs in its own
process so that its threads (/proc/PID/status Threads), RSS (VmRSS) and CPU seconds
(/proc/PID/stat utime + stime) can be read. For each probe: what was sent, how many times,
the result, whether the fix held, and /healthz sessions, threads and RSS before and after
(after: once sessions and generate jobs are back to 0), the server's CPU seconds per 10 s
while idle after it (a leaked session burns CPU making frames for nobody) and any ERROR /
Traceback line the server logged meanwhile. Prints a markdown table; writes JSON (--out).

The server's WebRTC connect timeout is its default, 20 s (serve has no flag for it). Probe 2
runs twice (2b: does the RSS grow again?). The SIGTERM probe (6b) runs last: it stops the
server with a /v1/generate job running; then (unless --no-sigint) a fresh server is started
and stopped with SIGINT (Ctrl-C) during a job (6c). A probe whose window has an ERROR or a
Traceback in the server's log does not count as held.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import base64
import glob
import io
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import wave
import zlib
from pathlib import Path
from typing import Any, Callable

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
CONNECT_TIMEOUT = 20.0  # the server's default WebRTC connect timeout (ServerConfig.connect_timeout)
MAX_AUDIO_AHEAD = 30.0  # the server's default backpressure bound (ServerConfig.max_audio_ahead)
MAX_MESSAGE = 12 << 20  # the server's default WebSocket message limit
SHUTDOWN_SECONDS = 5  # serve's stated graceful-shutdown time (uvicorn timeout_graceful_shutdown)
CLK = os.sysconf("SC_CLK_TCK")
ERROR_LINE = re.compile(r"\bERROR\b|Traceback|CRITICAL")

try:
    import aiortc  # noqa: F401

    HAVE_AIORTC = True
except ImportError:
    HAVE_AIORTC = False


# -- the server under test ----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`rtavatar serve` in a subprocess, its /proc numbers and its log."""

    def __init__(self, exe: str, checkpoint: str | None, max_sessions: int, log_path: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.ws = f"ws://127.0.0.1:{self.port}/v1/stream"
        self.log_path = log_path
        cmd = [exe, "serve", "--host", "127.0.0.1", "--port", str(self.port), "--max-sessions", str(max_sessions)]
        if checkpoint:
            cmd += ["--checkpoint", checkpoint]
        self.cmd = cmd
        env = {k: v for k, v in os.environ.items() if k != "RTAVATAR_TOKEN"}  # no token: the default loopback server
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT, env=env, start_new_session=True)
        self.pid = self.proc.pid

    def wait_ready(self, deadline_s: float) -> dict[str, Any]:
        t0 = time.time()
        while time.time() - t0 < deadline_s:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode}:\n{self.log_text()[-3000:]}")
            try:
                r = httpx.get(f"{self.base}/healthz", timeout=5)
                # ready once the server's own live probe has set its capacity and ended its sessions
                if r.status_code == 200 and r.json().get("capacity") and r.json()["sessions"] == 0:
                    return {**r.json(), "startup_s": round(time.time() - t0, 1)}
            except httpx.HTTPError:
                pass
            time.sleep(1.0)
        raise RuntimeError(f"no /healthz within {deadline_s:.0f} s:\n{self.log_text()[-3000:]}")

    def _status(self, key: str) -> int:
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
        return -1

    def threads(self) -> int:
        return self._status("Threads")

    def rss_mb(self) -> float:
        return round(self._status("VmRSS") / 1024, 1)

    def cpu_s(self) -> float:
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK  # utime, stime (fields 14, 15 of stat)

    def health(self, timeout: float = 10.0) -> tuple[dict[str, Any], float]:
        t = time.perf_counter()
        r = httpx.get(f"{self.base}/healthz", timeout=timeout)
        return r.json(), round(1000 * (time.perf_counter() - t), 1)

    def snapshot(self) -> dict[str, Any]:
        try:
            h, ms = self.health()
        except httpx.HTTPError as e:
            h, ms = {"error": e.__class__.__name__}, None
        return {"sessions": h.get("sessions"), "generate_jobs": h.get("generate_jobs"), "load": h.get("load"),
                "threads": self.threads(), "rss_mb": self.rss_mb(), "cpu_s": round(self.cpu_s(), 2), "healthz_ms": ms}

    def settle(self, deadline_s: float = 30.0) -> float | None:
        """Wait until /healthz shows no session and no generate job; the seconds it took (None: not within the deadline)."""
        t0 = time.time()
        while time.time() - t0 < deadline_s:
            try:
                h, _ = self.health()
                if h.get("sessions") == 0 and h.get("generate_jobs") == 0:
                    return round(time.time() - t0, 1)
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        return None

    def idle_cpu(self, window: float) -> float:
        """The server's CPU seconds per 10 s over `window` s of no client activity."""
        c0, t0 = self.cpu_s(), time.perf_counter()
        time.sleep(window)
        return round(10 * (self.cpu_s() - c0) / (time.perf_counter() - t0), 2)

    def log_size(self) -> int:
        self._log.flush()
        return self.log_path.stat().st_size

    def log_text(self, since: int = 0) -> str:
        self._log.flush()
        with open(self.log_path, "rb") as f:
            f.seek(since)
            return f.read().decode("utf-8", "replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGTERM)
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
            except ProcessLookupError:
                pass
        self._log.close()


# -- test material ------------------------------------------------------------------------


def voiced(seconds: float, rate: int = 16000) -> np.ndarray:
    """A speech-like signal: 140 Hz bursts with pauses (as server/capacity.voiced_signal; no TTS needed)."""
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 140 * t) * (np.sin(2 * np.pi * 1.5 * t) > -0.3)).astype(np.float32)


def wav_bytes(audio: np.ndarray, rate: int = 16000) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())
    return buf.getvalue()


def hour_wav_u8() -> bytes:
    """One hour of 8 kHz 8-bit mono (28.8 MB: under the 32 MB upload limit, so the length check is what answers)."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(1)
        w.setframerate(8000)
        w.writeframes(np.full(3600 * 8000, 128, np.uint8).tobytes())
    return buf.getvalue()


def bomb_png(width: int = 9000, height: int = 9000) -> bytes:
    """A ~100-byte PNG whose header declares width x height RGB (IHDR + a tiny IDAT + IEND)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b""))


def ws_connect(srv: Server, origin: str | None = None) -> Any:
    from websockets.sync.client import connect

    return connect(srv.ws, open_timeout=15, close_timeout=5, max_size=None, origin=origin)


def ws_reply(ws: Any, timeout: float = 30.0) -> dict[str, Any]:
    """The next JSON message (binary frames skipped)."""
    deadline = time.time() + timeout
    while True:
        m = ws.recv(timeout=max(0.1, deadline - time.time()))
        if isinstance(m, str):
            return json.loads(m)
        if time.time() > deadline:
            raise TimeoutError("no JSON reply")


def client(srv: Server) -> Any:
    from rtavatar.client import AvatarClient

    return AvatarClient(srv.ws, open_timeout=15)


class Watch:
    """Arrival times of a client's frames (a thread)."""

    def __init__(self, c: Any) -> None:
        self.times: list[float] = []
        self.t = threading.Thread(target=self._run, args=(c,), daemon=True)
        self.t.start()

    def _run(self, c: Any) -> None:
        for _ in c.frames(timeout=60):
            self.times.append(time.perf_counter())

    def between(self, a: float, b: float) -> list[float]:
        return [t for t in self.times if a <= t <= b]

    def max_gap_ms(self, a: float, b: float) -> float | None:
        ts = self.between(a, b)
        return round(1000 * max(np.diff(ts)), 0) if len(ts) > 1 else None

    def fps(self, a: float, b: float) -> float:
        return round(len(self.between(a, b)) / max(b - a, 1e-9), 1)


class Sampler:
    """Polls a function every `period` s in a thread (RSS peaks, /healthz latency)."""

    def __init__(self, fn: Callable[[], Any], period: float) -> None:
        self.fn, self.period, self.values = fn, period, []
        self.stop = threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                self.values.append(self.fn())
            except (httpx.HTTPError, OSError, ValueError) as e:
                self.values.append(e.__class__.__name__)
            self.stop.wait(self.period)

    def done(self) -> list[Any]:
        self.stop.set()
        self.t.join(timeout=15)
        return self.values


async def never_connecting_offer(av_dc: bool) -> Any:
    """A client RTCPeerConnection with a local offer; it never sets the answer, so DTLS never completes
    (while it lives it still answers the server's ICE checks)."""
    from aiortc import RTCPeerConnection

    pc = RTCPeerConnection()
    if av_dc:
        pc.addTransceiver("audio", direction="sendrecv")
    pc.addTransceiver("video", direction="recvonly")
    if av_dc:
        pc.createDataChannel("control")
    await pc.setLocalDescription(await pc.createOffer())
    return pc


# -- the probes ---------------------------------------------------------------------------


class Prober:
    def __init__(self, srv: Server, portrait_name: str, portrait: bytes, settle_s: float, idle_window: float) -> None:
        self.srv, self.name, self.portrait = srv, portrait_name, portrait
        self.settle_s, self.idle_window = settle_s, idle_window
        self.rows: list[dict[str, Any]] = []
        self.tmp_before = set(glob.glob("/tmp/rtavatar-gen-*"))
        self.webrtc_leftovers: list[str] = []  # ERROR lines of WebRTC peers' tasks logged during later probes

    def run(self, pid: str, title: str, fn: Callable[[dict[str, Any]], None], settle: bool = True) -> dict[str, Any]:
        srv = self.srv
        row: dict[str, Any] = {"id": pid, "probe": title, "sent": "", "count": 0, "result": "", "held": None, "notes": []}
        print(f"[probe {pid}] {title}", file=sys.stderr, flush=True)
        srv.settle(self.settle_s)
        row["before"] = srv.snapshot()
        log0, t0 = srv.log_size(), time.time()
        try:
            fn(row)
        except Exception as e:  # a probe that breaks is a result too; the others still run
            row["held"] = False
            row["result"] = f"probe failed: {e.__class__.__name__}: {str(e)[:300]}"
        if settle and srv.proc.poll() is None:
            row["settled_s"] = srv.settle(self.settle_s)
            if row["settled_s"] is None:
                row["notes"].append(f"sessions / generate jobs not back to 0 within {self.settle_s:.0f} s")
                row["held"] = False
            time.sleep(1.0)  # let closing threads finish
            row["after"] = srv.snapshot()
            row["idle_cpu_s_per_10s"] = srv.idle_cpu(self.idle_window)
        row["wall_s"] = round(time.time() - t0, 1)
        lines = srv.log_text(log0).splitlines()
        errors = []
        for i, ln in enumerate(lines):
            if not ERROR_LINE.search(ln):
                continue
            following = lines[i + 1] if i + 1 < len(lines) else ""
            if "Task was destroyed but it is pending" in ln and "WebRTCPeer" in following and not pid.startswith(("1", "2")):
                # a WebRTC peer's task from probes 1-2, garbage-collected during this probe: charged to those probes
                self.webrtc_leftovers.append(f"during probe {pid}: {ln.strip()} {following.strip()[:160]}")
                continue
            errors.append(ln if "Task was destroyed" not in ln else f"{ln} {following.strip()[:160]}")
        row["log_errors"] = len(errors)
        row["log_error_lines"] = errors[:10]
        if errors:  # an ERROR or a traceback in the server's log is a finding, whatever the probe's own checks said
            row["notes"].append(f"{len(errors)} ERROR/Traceback line(s) in the server log: {errors[0][:100]}")
            if row["held"]:
                row["held"] = False
        print(f"[probe {pid}] held={row['held']} {row['result'][:200]}", file=sys.stderr, flush=True)
        self.rows.append(row)
        return row

    # 1 ------------------------------------------------------------------------------------
    def p1_malformed_offers(self, row: dict[str, Any]) -> None:
        srv = self.srv
        row["sent"] = f'POST /v1/webrtc/offer {{"sdp": "garbage", "type": "offer", "portrait": "bundled:{self.name}"}} x3'
        codes = []
        for _ in range(3):
            r = httpx.post(f"{srv.base}/v1/webrtc/offer", json={"sdp": "garbage", "type": "offer", "portrait": f"bundled:{self.name}"},
                           timeout=60)
            codes.append((r.status_code, r.json().get("error", "")[:160]))
        row["count"] = 3
        row["garbage"] = codes
        h, _ = srv.health()
        ok = all(c == 400 for c, _ in codes) and h["sessions"] == 0
        video = None
        if HAVE_AIORTC:
            row["sent"] += "; an aiortc video-only offer (recvonly), never connected, x1"
            row["count"] += 1

            async def go() -> dict[str, Any]:
                pc = await never_connecting_offer(av_dc=False)
                try:
                    async with httpx.AsyncClient(timeout=60) as hc:
                        r = await hc.post(f"{srv.base}/v1/webrtc/offer", json={"sdp": pc.localDescription.sdp, "type": "offer",
                                                                             "portrait": f"bundled:{self.name}"})
                        out = {"status": r.status_code, "error": r.json().get("error", "")[:160] if r.status_code != 200 else None}
                        t0 = time.time()
                        while time.time() - t0 < CONNECT_TIMEOUT + 20:  # an answered offer: released after the connect timeout?
                            if (await hc.get(f"{srv.base}/healthz")).json()["sessions"] == 0:
                                out["released_after_s"] = round(time.time() - t0, 1)
                                break
                            await asyncio.sleep(0.5)
                        return out
                finally:
                    await pc.close()

            video = asyncio.run(go())
            row["video_only"] = video
            ok = ok and video["status"] in (200, 400) and "released_after_s" in video
        else:
            row["notes"].append("aiortc is not installed: the video-only offer was skipped")
        row["result"] = (f"garbage: {', '.join(str(c) for c, _ in codes)} ({codes[0][1][:90]})"
                         + (f"; video-only: HTTP {video['status']}" + (f" ({video['error'][:80]})" if video.get("error") else "")
                            + (f", sessions 0 after {video['released_after_s']} s" if "released_after_s" in video else ", session NOT released")
                            if video else ""))
        row["held"] = ok

    # 2 ------------------------------------------------------------------------------------
    def p2_unconnected_offers(self, row: dict[str, Any]) -> None:
        srv = self.srv
        if not HAVE_AIORTC:
            row["sent"], row["result"], row["held"] = "skipped", "skipped: aiortc is not installed", None
            return
        row["sent"] = (f"4 aiortc offers (audio sendrecv + video recvonly + data channel, bundled:{self.name}) whose client never "
                       f"sets the answer (the server's ICE checks can succeed, DTLS never does); a WebSocket start while they are held; "
                       f"wait past the {CONNECT_TIMEOUT:.0f} s "
                       "connect timeout (the server's default); a WebSocket start again")
        row["count"] = 4

        def ws_start() -> str:
            try:
                c = client(srv)
            except Exception as e:
                return f"connect failed: {e.__class__.__name__}"
            try:
                c.start(self.portrait, timeout=60, live=True)
                return "accepted"
            except RuntimeError as e:
                return f"refused: {str(e)[:160]}"
            finally:
                c.close()

        async def go() -> dict[str, Any]:
            pcs, out = [], {"offers": []}
            try:
                async with httpx.AsyncClient(timeout=60) as hc:
                    for _ in range(4):
                        pc = await never_connecting_offer(av_dc=True)
                        pcs.append(pc)
                        r = await hc.post(f"{srv.base}/v1/webrtc/offer", json={"sdp": pc.localDescription.sdp, "type": "offer",
                                                                             "portrait": f"bundled:{self.name}"})
                        out["offers"].append({"status": r.status_code, "retry_after": r.headers.get("retry-after"),
                                              "error": None if r.status_code == 200 else r.json().get("error", "")[:200]})
                    t_answered = time.time()
                    h = (await hc.get(f"{srv.base}/healthz")).json()
                    out["held"] = {"sessions": h["sessions"], "load": h["load"], "threads": srv.threads()}
                    out["ws_start_while_held"] = await asyncio.to_thread(ws_start) if h["sessions"] else "not tried (nothing held)"
                    c0 = srv.cpu_s()
                    while time.time() - t_answered < CONNECT_TIMEOUT + 25:
                        h = (await hc.get(f"{srv.base}/healthz")).json()
                        if h["sessions"] == 0:
                            out["released_after_s"] = round(time.time() - t_answered, 1)
                            break
                        await asyncio.sleep(0.5)
                    out["cpu_s_per_10s_while_held"] = round(10 * (srv.cpu_s() - c0) / max(time.time() - t_answered, 1e-9), 2)
            finally:
                for pc in pcs:
                    await pc.close()
            return out

        out = asyncio.run(go())
        out["ws_start_after"] = ws_start()
        row["detail"] = out
        answered = sum(o["status"] == 200 for o in out["offers"])
        busy = [o for o in out["offers"] if o["status"] == 503]
        row["result"] = (f"answered {answered} of 4 (" + ", ".join(str(o["status"]) for o in out["offers"]) + ")"
                         + (f"; 503: {busy[0]['error'][:90]}" if busy else "")
                         + f"; held: {out['held']['sessions']} session(s); WebSocket start meanwhile: {out['ws_start_while_held'][:60]}; "
                         + (f"sessions 0 after {out['released_after_s']} s" if "released_after_s" in out else "sessions NOT released")
                         + f"; WebSocket start after: {out['ws_start_after'][:60]}")
        row["held"] = answered >= 1 and "released_after_s" in out and out["ws_start_after"] == "accepted" \
            and out["released_after_s"] <= CONNECT_TIMEOUT + 5

    # 3 ------------------------------------------------------------------------------------
    def p3_foreign_origin(self, row: dict[str, Any]) -> None:
        from websockets.exceptions import InvalidStatus

        srv, evil = self.srv, "http://evil.example"
        row["sent"] = f"Origin: {evil} on a WebSocket handshake, a multipart POST /v1/generate and a POST /v1/webrtc/offer, x1 each"
        row["count"] = 3
        out: dict[str, Any] = {}
        try:
            with ws_connect(srv, origin=evil) as ws:
                ws.send(json.dumps({"type": "start", "portrait": base64.b64encode(self.portrait).decode()}))
                out["websocket"] = f"ACCEPTED: {ws_reply(ws)['type']}"
        except InvalidStatus as e:
            out["websocket"] = f"refused: HTTP {e.response.status_code}"
        r = httpx.post(f"{srv.base}/v1/generate", headers={"Origin": evil}, timeout=60,
                       files={"portrait": ("p.jpg", self.portrait, "image/jpeg"), "audio": ("a.wav", wav_bytes(voiced(1.0)), "audio/wav")})
        out["generate"] = f"HTTP {r.status_code}: {r.text[:120]}"
        r = httpx.post(f"{srv.base}/v1/webrtc/offer", headers={"Origin": evil}, timeout=60,
                       json={"sdp": "garbage", "type": "offer", "portrait": f"bundled:{self.name}"})
        out["offer"] = f"HTTP {r.status_code}: {r.text[:120]}"
        with ws_connect(srv, origin=f"http://127.0.0.1:{srv.port}") as ws:  # control: the server's own page passes
            ws.send(json.dumps({"type": "flush"}))
            out["own_origin_control"] = ws_reply(ws, 10).get("error", "")[:80]
        row["detail"] = out
        row["result"] = f"WebSocket {out['websocket']}; generate {out['generate'][:8]}; offer {out['offer'][:8]}; " \
                        f"error: {out['generate'][10:100]}"
        row["held"] = out["websocket"].startswith("refused") and out["generate"].startswith("HTTP 403") \
            and out["offer"].startswith("HTTP 403")

    # 4 ------------------------------------------------------------------------------------
    def p4_bomb(self, row: dict[str, Any]) -> None:
        srv = self.srv
        bomb = bomb_png()
        row["sent"] = f"a {len(bomb)}-byte PNG declaring 9000x9000 as a WebSocket start portrait, x3, while one live session streams"
        row["count"] = 3
        live = client(srv)
        try:
            live.start(self.portrait, timeout=90, live=True)
            w = Watch(live)
            time.sleep(2.0)  # past the session's start-up
            b0 = time.perf_counter()
            lat_before = []
            for _ in range(5):
                lat_before.append(srv.health()[1])
                time.sleep(1.0)
            b1 = time.perf_counter()
            poll = Sampler(lambda: srv.health()[1], 0.1)
            p0 = time.perf_counter()
            replies = []
            with ws_connect(srv) as ws:
                for _ in range(3):
                    t = time.perf_counter()
                    ws.send(json.dumps({"type": "start", "portrait": base64.b64encode(bomb).decode(), "align": "center"}))
                    m = ws_reply(ws, 30)
                    replies.append({"ms": round(1000 * (time.perf_counter() - t), 1), "error": m.get("error", "")[:160],
                                    "fatal": m.get("fatal")})
            time.sleep(1.0)
            p1 = time.perf_counter()
            lat = [v for v in poll.done() if isinstance(v, float)]
            d = {"replies": replies, "gap_ms_before": w.max_gap_ms(b0, b1), "gap_ms_during": w.max_gap_ms(p0, p1),
                 "fps_before": w.fps(b0, b1), "fps_during": w.fps(p0, p1),
                 "healthz_ms_before_max": max(lat_before), "healthz_ms_during_max": max(lat) if lat else None,
                 "healthz_polls_during": len(lat)}
        finally:
            live.close()
        row["detail"] = d
        row["result"] = (f"refused in {max(r['ms'] for r in replies):.0f} ms max ({replies[0]['error'][:70]}); live session's longest "
                         f"frame gap {d['gap_ms_before']:.0f} ms before, {d['gap_ms_during']:.0f} ms during "
                         f"({d['fps_before']} / {d['fps_during']} fps); /healthz max {d['healthz_ms_before_max']:.0f} ms before, "
                         f"{d['healthz_ms_during_max']:.0f} ms during")
        row["held"] = all("9000x9000" in r["error"] and not r["fatal"] and r["ms"] < 2000 for r in replies) \
            and d["gap_ms_during"] is not None and d["gap_ms_during"] <= max(2 * d["gap_ms_before"], d["gap_ms_before"] + 150) \
            and d["healthz_ms_during_max"] is not None and d["healthz_ms_during_max"] < 500

    # 5 ------------------------------------------------------------------------------------
    def p5_flood(self, row: dict[str, Any]) -> None:
        srv = self.srv
        row["sent"] = "one live WebSocket session pushes 60 s of audio as fast as it can, in 1 s pushes (int16, 16 kHz)"
        row["count"] = 60
        c = client(srv)
        try:
            c.start(self.portrait, timeout=90, live=True)
            rss = Sampler(srv.rss_mb, 0.2)
            rss0 = srv.rss_mb()
            second = voiced(1.0)
            t = time.perf_counter()
            for _ in range(60):
                c.push(second)
            push_s = time.perf_counter() - t
            time.sleep(3.0)  # the refusals arrive
            peak = max(v for v in rss.done() if isinstance(v, float))
            refusals = [m["error"] for m in c.messages if m["type"] == "error"]
            ahead = [e for e in refusals if "ahead" in e]
        finally:
            c.close()
        accepted = 60 - len(refusals)
        row["detail"] = {"push_s": round(push_s, 2), "accepted": accepted, "refused": len(refusals), "refused_ahead": len(ahead),
                         "first_refusal": refusals[0][:200] if refusals else None, "rss_mb_at_start": rss0, "rss_mb_peak": peak}
        row["result"] = (f"{accepted} accepted, {len(refusals)} refused in {push_s:.2f} s"
                         + (f" (\"{refusals[0][:110]}\")" if refusals else "") + f"; RSS peak +{peak - rss0:.0f} MB")
        row["held"] = len(ahead) > 0 and accepted <= MAX_AUDIO_AHEAD + 2 and peak - rss0 < 300

    # 6 ------------------------------------------------------------------------------------
    def p6_generate(self, row: dict[str, Any]) -> None:
        srv = self.srv
        audio = wav_bytes(voiced(10.0))
        files = {"portrait": ("p.jpg", self.portrait, "image/jpeg"), "audio": ("a.wav", audio, "audio/wav")}
        row["sent"] = ("4 concurrent POST /v1/generate (the bundled photo, 10 s of audio); then 1 whose client gives up after 2 s")
        row["count"] = 5
        results: list[dict[str, Any]] = []

        def post() -> None:
            t = time.perf_counter()
            try:
                r = httpx.post(f"{srv.base}/v1/generate", files=files, timeout=300)
                results.append({"status": r.status_code, "s": round(time.perf_counter() - t, 1), "retry_after": r.headers.get("retry-after"),
                                "bytes": len(r.content), "error": r.json().get("error", "")[:120] if r.status_code != 200 else None})
            except httpx.HTTPError as e:
                results.append({"status": e.__class__.__name__, "s": round(time.perf_counter() - t, 1)})

        jobs = Sampler(lambda: srv.health()[0]["generate_jobs"], 0.25)
        ts = [threading.Thread(target=post) for _ in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(timeout=320)
        max_jobs = max((v for v in jobs.done() if isinstance(v, int)), default=None)
        # the client that gives up
        t = time.perf_counter()
        try:
            httpx.post(f"{srv.base}/v1/generate", files=files, timeout=2.0)
            gave_up = "the request finished within 2 s (nothing to abandon)"
        except httpx.TimeoutException:
            gave_up = "gave up after 2 s"
        running_after_give_up = srv.health()[0]["generate_jobs"]
        freed = srv.settle(60)
        cancel_s = round(time.perf_counter() - t, 1) if freed is not None else None
        time.sleep(0.5)
        left = sorted(set(glob.glob("/tmp/rtavatar-gen-*")) - self.tmp_before)
        ok_codes = [r for r in results if r["status"] == 200]
        busy = [r for r in results if r["status"] == 503]
        row["detail"] = {"concurrent": results, "max_generate_jobs_seen": max_jobs, "abandoned": gave_up,
                         "jobs_right_after_give_up": running_after_give_up, "abandoned_job_gone_after_s": cancel_s, "tmp_left": left}
        row["result"] = (f"concurrent: {', '.join(str(r['status']) for r in results)} (200 in {ok_codes[0]['s'] if ok_codes else '-'} s; "
                         f"503 Retry-After {busy[0]['retry_after'] if busy else '-'}); max jobs seen {max_jobs}; abandoned: {gave_up}, "
                         f"generate_jobs 0 after {cancel_s} s; temp dirs left: {len(left)}")
        row["held"] = len(ok_codes) >= 1 and len(ok_codes) + len(busy) == 4 and (max_jobs or 0) <= 1 and cancel_s is not None \
            and cancel_s < 15 and not left

    def p6b_sigterm(self, row: dict[str, Any], sig: signal.Signals = signal.SIGTERM) -> None:
        srv = self.srv
        files = {"portrait": ("p.jpg", self.portrait, "image/jpeg"), "audio": ("a.wav", wav_bytes(voiced(60.0)), "audio/wav")}
        row["sent"] = f"{sig.name} to the server while a /v1/generate job (60 s of audio) runs, x1"
        row["count"] = 1
        got: list[Any] = []

        def post() -> None:
            try:
                r = httpx.post(f"{srv.base}/v1/generate", files=files, timeout=120)
                got.append(r.status_code)
            except httpx.HTTPError as e:
                got.append(e.__class__.__name__)

        th = threading.Thread(target=post, daemon=True)
        th.start()
        t0 = time.time()
        while time.time() - t0 < 30 and srv.health()[0]["generate_jobs"] == 0:
            time.sleep(0.1)
        running = srv.health()[0]["generate_jobs"]
        time.sleep(1.0)
        jobdirs = sorted(set(glob.glob("/tmp/rtavatar-gen-*")) - self.tmp_before)
        log0 = srv.log_size()
        cpu0 = srv.cpu_s()
        t = time.perf_counter()
        srv.proc.send_signal(sig)
        rc, exit_s, finished_s, cpu_last = None, None, None, cpu0
        while time.perf_counter() - t < 60:  # the exit, the moment uvicorn says it finished, and the CPU the process uses meanwhile
            if srv.proc.poll() is not None:
                rc, exit_s = srv.proc.returncode, round(time.perf_counter() - t, 1)
                break
            try:
                cpu_last = srv.cpu_s()
            except (OSError, ValueError, IndexError):
                pass
            if finished_s is None and "Finished server process" in srv.log_text(log0):
                finished_s = round(time.perf_counter() - t, 1)
            time.sleep(0.1)
        if rc is None:
            row["notes"].append(f"the server did not exit within 60 s of {sig.name}: killed")
            os.killpg(srv.pid, signal.SIGKILL)
            srv.proc.wait(timeout=10)
        th.join(timeout=20)
        time.sleep(0.5)
        left = sorted(set(glob.glob("/tmp/rtavatar-gen-*")) - self.tmp_before)
        lingered = round(cpu_last - cpu0, 1)
        row["detail"] = {"jobs_running_at_signal": running, "job_dirs_at_signal": len(jobdirs), "exit_s": exit_s, "returncode": rc,
                         "uvicorn_finished_s": finished_s, "cpu_s_after_signal": lingered, "client_got": got[0] if got else None,
                         "tmp_left": left, "stated_s": SHUTDOWN_SECONDS}
        row["after"] = {"sessions": None, "generate_jobs": None, "threads": None, "rss_mb": None, "exited": rc is not None}
        row["result"] = (f"{running} job running; uvicorn finished at {finished_s} s, the process exited at {exit_s} s (rc {rc}; "
                         f"{lingered} CPU-s after the signal); the client got {got[0] if got else 'nothing'}; temp dirs left: {len(left)}")
        row["held"] = running == 1 and exit_s is not None and exit_s <= SHUTDOWN_SECONDS + 2 and not left
        if exit_s is not None and exit_s > SHUTDOWN_SECONDS + 2:
            row["notes"].append(f"exit took longer than the stated {SHUTDOWN_SECONDS} s (+2)")

    # 7 ------------------------------------------------------------------------------------
    def p7_admission(self, row: dict[str, Any]) -> None:
        srv = self.srv
        row["sent"] = f"live WebSocket sessions (bundled:{self.name}, pasted back) opened one by one until refused (at most 5)"
        clients, watches, refusal, retry_after = [], [], None, None
        h0, _ = srv.health()
        try:
            for _ in range(5):
                c = client(srv)
                clients.append(c)
                try:
                    c.start(self.portrait, timeout=90, live=True)
                    watches.append(Watch(c))
                    time.sleep(1.0)
                except RuntimeError as e:
                    refusal = str(e)
                    retry_after = next((m.get("retry_after") for m in reversed(c.messages) if m["type"] == "error"), None)
                    break
            row["count"] = len(clients)
            h, _ = srv.health()
            a, b = time.perf_counter(), time.perf_counter() + 4.0  # idle frames (no audio)
            time.sleep(4.2)
            fps_idle = [w.fps(a, b) for w in watches]
            t0 = time.perf_counter()  # then speech, 1 s pushed each second to every admitted session, for 8 s

            def feed(c: Any) -> None:
                for k in range(8):
                    time.sleep(max(0.0, t0 + k - time.perf_counter()))
                    c.push(voiced(1.0))

            feeders = [threading.Thread(target=feed, args=(c,), daemon=True) for c in clients[:len(watches)]]
            for f in feeders:
                f.start()
            time.sleep(max(0.0, t0 + 8.2 - time.perf_counter()))
            fps = [w.fps(t0 + 2.0, t0 + 8.0) for w in watches]
        finally:
            for c in clients:
                c.close()
        admitted = len(watches)
        row["detail"] = {"capacity": h0.get("capacity"), "admitted": admitted, "load_when_full": h.get("load"), "refusal": refusal,
                         "retry_after": retry_after, "admitted_fps_idle": fps_idle, "admitted_fps_speaking": fps}
        row["result"] = (f"admitted {admitted} (capacity {h0.get('capacity')}, load {h.get('load')}; fps idle {fps_idle}, "
                         f"speaking {fps}); "
                         + (f"refused: \"{refusal[:150]}\" retry_after={retry_after}" if refusal else "never refused"))
        row["held"] = admitted >= 1 and refusal is not None and "busy" in refusal and "retry" in refusal and retry_after is not None
        if fps and min(fps) < 24.0:
            row["notes"].append(f"an admitted session fell below real time while speaking ({min(fps)} fps)")
            row["held"] = False

    # 8 ------------------------------------------------------------------------------------
    def p8a_model_name(self, row: dict[str, Any]) -> None:
        h, _ = self.srv.health()
        page = httpx.get(f"{self.srv.base}/", timeout=10).text
        row["sent"], row["count"] = "GET /healthz and GET / (the page)", 2
        absolute = h["model"].startswith("/") or str(ROOT) in h["model"] or str(ROOT) in page
        row["result"] = f"model: {h['model']!r}; absolute path in /healthz or the page: {absolute}"
        row["held"] = not absolute

    def p8b_client_close(self, row: dict[str, Any]) -> None:
        srv = self.srv
        row["sent"], row["count"] = "a live session (0.5 s of audio pushed) whose client closes its socket mid-stream", 3
        for _ in range(3):
            c = client(srv)
            try:
                c.start(self.portrait, timeout=90, live=True)
                c.push(voiced(0.5))
                time.sleep(0.5)
            finally:
                c.close()
        srv.settle(self.settle_s)
        time.sleep(1.0)
        closed = len(re.findall(r"websocket closed", srv.log_text(row["_log0"])))
        errors = [ln for ln in srv.log_text(row["_log0"]).splitlines() if ERROR_LINE.search(ln)]
        row["result"] = f"{closed} 'closed' INFO line(s); {len(errors)} ERROR/Traceback line(s)"
        row["held"] = not errors and closed >= 3

    def p8c_error_paths(self, row: dict[str, Any]) -> None:
        srv = self.srv
        wav = wav_bytes(voiced(1.0))
        row["sent"], row["count"] = "POST /v1/generate with a non-image portrait and with the 9000x9000 PNG", 2
        out = []
        for name, data in (("p.png", b"not an image"), ("bomb.png", bomb_png())):
            r = httpx.post(f"{srv.base}/v1/generate", files={"portrait": (name, data), "audio": ("a.wav", wav)}, timeout=60)
            out.append((r.status_code, r.json().get("error", "")))
        row["detail"] = out
        leaks = [e for _, e in out if "/tmp" in e or str(ROOT) in e or "rtavatar-gen-" in e]
        row["result"] = "; ".join(f"{c}: {e[:80]!r}" for c, e in out) + f"; server paths in bodies: {len(leaks)}"
        row["held"] = all(c == 400 for c, _ in out) and not leaks

    def p8d_strict_options(self, row: dict[str, Any]) -> None:
        srv = self.srv
        b64 = base64.b64encode(self.portrait).decode()
        row["sent"] = "WebSocket start with seed 2**70, steps \"5\", steps true (one connection); POST /v1/generate with seed=2**70"
        row["count"] = 4
        out = []
        with ws_connect(srv) as ws:
            for field, value in (("seed", 2**70), ("steps", "5"), ("steps", True)):
                ws.send(json.dumps({"type": "start", "portrait": b64, field: value}))
                m = ws_reply(ws, 30)
                out.append({"sent": f"{field}={value!r}", "type": m["type"], "fatal": m.get("fatal"), "error": m.get("error", "")[:140],
                            "named": field in m.get("error", "")})
            ws.send(json.dumps({"type": "flush"}))
            still_open = "before start" in ws_reply(ws, 10).get("error", "")
        r = httpx.post(f"{srv.base}/v1/generate", timeout=60, data={"seed": str(2**70)},
                       files={"portrait": ("p.jpg", self.portrait), "audio": ("a.wav", wav_bytes(voiced(1.0)))})
        gen = {"status": r.status_code, "error": r.json().get("error", "")[:160] if r.status_code != 200 else None}
        row["detail"] = {"start": out, "connection_open_after": still_open, "generate_seed": gen}
        row["result"] = "; ".join(f"{o['sent']}: {o['type']}{' (fatal)' if o['fatal'] else ''}, field named: {o['named']}" for o in out) \
            + f"; connection open after: {still_open}; generate seed=2**70: HTTP {gen['status']}"
        row["held"] = all(o["type"] == "error" and o["named"] and not o["fatal"] for o in out) and still_open and gen["status"] == 400

    def p8e_big_message(self, row: dict[str, Any]) -> None:
        from websockets.exceptions import ConnectionClosed

        srv = self.srv
        size = MAX_MESSAGE + (1 << 20)
        row["sent"] = f"a {size / 2**20:.0f} MB WebSocket text message (limit {MAX_MESSAGE >> 20} MB), then a flush on the same connection; " \
                      f"and, for reference, a {2 * MAX_MESSAGE / 2**20 + 1:.0f} MB one (over the transport's 2x limit)"
        row["count"] = 2
        text = json.dumps({"type": "start", "portrait": "A" * size})
        d: dict[str, Any] = {}
        with ws_connect(srv) as ws:
            ws.send(text)
            m = ws_reply(ws, 60)
            d["reply"] = {"error": m.get("error", "")[:140], "fatal": m.get("fatal")}
            ws.send(json.dumps({"type": "flush"}))
            d["open_after"] = "before start" in ws_reply(ws, 10).get("error", "")
        del text
        try:
            with ws_connect(srv) as ws:
                ws.send("x" * (2 * MAX_MESSAGE + (1 << 20)))
                m = ws_reply(ws, 60)
                d["over_transport"] = f"reply: {m.get('error', '')[:100]}"
        except ConnectionClosed as e:
            d["over_transport"] = f"closed {e.rcvd.code if e.rcvd else None}"
        row["detail"] = d
        row["result"] = f"{size >> 20} MB: {d['reply']['error'][:90]!r} fatal={d['reply']['fatal']}, connection open after: {d['open_after']}; " \
                        f"{(2 * MAX_MESSAGE + (1 << 20)) >> 20} MB: {d['over_transport']}"
        row["held"] = not d["reply"]["fatal"] and "limit" in d["reply"]["error"] and d["open_after"]

    def p8f_hour_upload(self, row: dict[str, Any]) -> None:
        srv = self.srv
        audio = hour_wav_u8()
        row["sent"], row["count"] = f"POST /v1/generate with a 1-hour WAV (8 kHz 8-bit, {len(audio) / 1e6:.1f} MB) and the bundled photo, x3", 3
        tries = []
        for _ in range(3):  # twice: does the RSS it leaves behind grow again, or is it the allocator's high-water mark?
            rss0 = srv.rss_mb()
            rss = Sampler(srv.rss_mb, 0.2)
            t = time.perf_counter()
            r = httpx.post(f"{srv.base}/v1/generate", files={"portrait": ("p.jpg", self.portrait), "audio": ("hour.wav", audio)}, timeout=180)
            s = round(time.perf_counter() - t, 1)
            peak = max(v for v in rss.done() if isinstance(v, float))
            time.sleep(1.0)
            err = r.json().get("error", "") if r.status_code != 200 else ""
            tries.append({"status": r.status_code, "error": err, "s": s, "rss_mb_before": rss0, "rss_mb_peak": peak, "rss_mb_after": srv.rss_mb()})
        row["detail"] = tries
        r0 = tries[0]
        row["result"] = (f"HTTP {r0['status']} in {r0['s']} s: {r0['error'][:110]!r}; RSS " + ", then ".join(
            f"{t['rss_mb_before']:.0f} → peak {t['rss_mb_peak']:.0f} → {t['rss_mb_after']:.0f} MB" for t in tries))
        row["held"] = all(t["status"] == 400 and "in parts" not in t["error"] and ("long" in t["error"] or "600" in t["error"])
                          and "/tmp" not in t["error"] for t in tries)
        if r0["rss_mb_peak"] - r0["rss_mb_before"] > 200:
            row["notes"].append(f"the hour is decoded in full before its length is checked: +{r0['rss_mb_peak'] - r0['rss_mb_before']:.0f} MB "
                                "peak for one request")

    def run_all(self) -> None:
        self.run("1", "malformed WebRTC offers", self.p1_malformed_offers)
        self.run("2", "answered offers that never connect", self.p2_unconnected_offers)
        self.run("2b", "the same again (does RSS grow again?)", self.p2_unconnected_offers)
        self.run("3", "foreign Origin", self.p3_foreign_origin)
        self.run("4", "9000x9000 PNG bomb beside a live session", self.p4_bomb)
        self.run("5", "audio flood", self.p5_flood)
        self.run("6", "concurrent and abandoned /v1/generate", self.p6_generate)
        self.run("7", "admission by capacity", self.p7_admission)
        self.run("8a", "model name on /healthz and the page", self.p8a_model_name)

        def close_probe(row: dict[str, Any]) -> None:
            row["_log0"] = self.srv.log_size()
            self.p8b_client_close(row)
            del row["_log0"]

        self.run("8b", "client-initiated WebSocket close", close_probe)
        self.run("8c", "error bodies of /v1/generate", self.p8c_error_paths)
        self.run("8d", "strict options (seed, steps)", self.p8d_strict_options)
        self.run("8e", "WebSocket message over the limit", self.p8e_big_message)
        self.run("8f", "1-hour audio upload", self.p8f_hour_upload)
        self.run("6b", "SIGTERM with a generate job running", self.p6b_sigterm, settle=False)
        self.charge_webrtc_leftovers()

    def charge_webrtc_leftovers(self) -> None:
        if not self.webrtc_leftovers:
            return
        for row in self.rows:
            if row["id"] in ("2", "2b"):
                row["notes"].append(f"{len(self.webrtc_leftovers)} 'Task was destroyed but it is pending' (WebRTCPeer) ERROR line(s) "
                                    "logged during later probes, when released peers' tasks were garbage-collected")
                row["webrtc_leftovers"] = self.webrtc_leftovers
                row["held"] = False


# -- report -------------------------------------------------------------------------------


def fmt_pair(row: dict[str, Any], key: str) -> str:
    a, b = row.get("before", {}).get(key), row.get("after", {}).get(key)
    if a is None and b is None:
        return "-"
    if key == "rss_mb":
        a = f"{a:.0f}" if isinstance(a, float) else a
        b = f"{b:.0f}" if isinstance(b, float) else (b if b is not None else "exited")
    return f"{a} → {b if b is not None else 'exited'}"


def table(rows: list[dict[str, Any]]) -> str:
    def cell(s: Any) -> str:
        return str(s).replace("|", "\\|").replace("\n", " ")

    out = ["| # | probe | sent (count) | result | held | sessions | threads | RSS MB | idle CPU s/10 s after | log errors |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        held = {True: "yes", False: "**NO**", None: "skipped"}[r["held"]]
        notes = f" ({'; '.join(r['notes'])})" if r["notes"] else ""
        out.append(f"| {r['id']} | {cell(r['probe'])} | {cell(r['sent'])} ({r['count']}) | {cell(r['result'])}{cell(notes)} | {held} | "
                   f"{fmt_pair(r, 'sessions')} | {fmt_pair(r, 'threads')} | {fmt_pair(r, 'rss_mb')} | "
                   f"{r.get('idle_cpu_s_per_10s', '-')} | {r['log_errors']} |")
    return "\n".join(out)


def git_state() -> dict[str, Any]:
    """The commit the server ran from, and whether src/ had uncommitted changes."""
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    return {"commit": git("rev-parse", "--short", "HEAD"), "src_changes": git("status", "--porcelain", "--", "src").splitlines()}


def wait_for_quiet(max_load: float, wait_s: float) -> list[float]:
    t0 = time.time()
    while os.getloadavg()[0] >= max_load and time.time() - t0 < wait_s:
        print(f"load {os.getloadavg()[0]:.2f} >= {max_load}: waiting", file=sys.stderr, flush=True)
        time.sleep(10)
    return [round(x, 2) for x in os.getloadavg()]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=None, help="serve this run instead of the shipped model")
    p.add_argument("--rtavatar", default=str(ROOT / ".venv" / "bin" / "rtavatar"), help="the rtavatar command to run")
    p.add_argument("--max-sessions", type=int, default=4)
    p.add_argument("--startup-timeout", type=float, default=300.0, help="seconds for /healthz to answer (model load + capacity)")
    p.add_argument("--settle", type=float, default=45.0, help="seconds to wait for sessions / jobs to return to 0 after a probe")
    p.add_argument("--idle-window", type=float, default=5.0, help="seconds of idle CPU measured after each probe")
    p.add_argument("--max-load", type=float, default=2.0, help="wait (up to --load-wait s) for the 1-min load to drop below this")
    p.add_argument("--load-wait", type=float, default=180.0)
    p.add_argument("--log", default=None, help="keep the server's log here (default: a temp file, removed)")
    p.add_argument("--no-sigint", action="store_true", help="skip probe 6c (a second server stopped with SIGINT)")
    p.add_argument("--out", default=str(ROOT / "docs" / "results" / "engine" / "probe_server_cpu.json"))
    a = p.parse_args()

    load_before = wait_for_quiet(a.max_load, a.load_wait)
    log_path = Path(a.log) if a.log else Path(tempfile.mkstemp(prefix="probe-server-", suffix=".log")[1])
    srv = Server(a.rtavatar, a.checkpoint, a.max_sessions, log_path)
    t_start = time.time()
    out: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M"), "cpus": os.cpu_count(), "load_before": load_before,
                           "command": " ".join(srv.cmd), "aiortc": HAVE_AIORTC, "connect_timeout_s": CONNECT_TIMEOUT, "git": git_state()}
    try:
        ready = srv.wait_ready(a.startup_timeout)
        out["healthz"] = ready
        m = re.search(r"capacity: frames a second of one session on this machine: (\{.*\})", srv.log_text())
        out["capacity_rates_fps"] = ast.literal_eval(m.group(1)) if m else None  # what serve measured at start-up
        print(f"server ready in {ready['startup_s']} s: {ready['model']}, capacity {ready.get('capacity')}", file=sys.stderr, flush=True)
        name = httpx.get(f"{srv.base}/v1/portraits", timeout=10).json()["portraits"][0]
        portrait = httpx.get(f"{srv.base}/v1/portraits/{name}", timeout=10).content
        out["idle_at_start"] = srv.snapshot()
        # Warm-up: one short session, so lazily created pools (to_thread's executor) exist before the baselines.
        c = client(srv)
        try:
            c.start(portrait, timeout=90, live=False)
            c.push(voiced(1.0))
            c.end()
            out["warmup_frames"] = sum(1 for _ in c.frames(timeout=60))
        finally:
            c.close()
        srv.settle(a.settle)
        time.sleep(1.0)
        out["idle_after_warmup"] = {**srv.snapshot(), "idle_cpu_s_per_10s": srv.idle_cpu(a.idle_window)}
        prober = Prober(srv, name, portrait, a.settle, a.idle_window)
        try:
            prober.run_all()
            if not a.no_sigint:  # Ctrl-C is how a person stops serve: a fresh server, stopped with SIGINT during a job
                srv.stop()
                srv = Server(a.rtavatar, a.checkpoint, a.max_sessions, log_path.with_suffix(".sigint.log"))
                srv.wait_ready(a.startup_timeout)
                prober.srv = srv
                prober.run("6c", "SIGINT (Ctrl-C) with a generate job running (a fresh server)",
                           lambda row: prober.p6b_sigterm(row, signal.SIGINT), settle=False)
        finally:
            out["rows"] = prober.rows
    finally:
        srv.stop()
        out["total_s"] = round(time.time() - t_start, 1)
        out["log_error_lines"] = []
        for path in (log_path, log_path.with_suffix(".sigint.log")):
            if path.exists():
                out["log_error_lines"] += [ln for ln in path.read_text(errors="replace").splitlines() if ERROR_LINE.search(ln)][:40]
                if not a.log:
                    path.unlink(missing_ok=True)
    rows = out.get("rows", [])
    md = table(rows)
    print(md)
    failed = [r["id"] for r in rows if r["held"] is False]
    print(f"\nidle after warm-up: {out.get('idle_after_warmup')}\nnot held: {failed or 'none'}")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({**out, "not_held": failed, "table": md}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
