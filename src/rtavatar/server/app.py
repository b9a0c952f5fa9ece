"""`rtavatar serve`: one loaded Avatar shared by every session, over HTTP and WebSocket.

- `GET /healthz`: status, model, sessions in use.
- `POST /v1/generate`: multipart portrait + audio -> mp4 (the offline path).
- `WS /v1/stream`: a live session for programs (docs/PROTOCOL.md; `rtavatar.client`).

Every malformed message gets an `error` message and the connection (and every other
session) keeps going (a refused `start` can be sent again); only a full server or an idle
timeout ends a connection. Limits:
`max_sessions` live sessions, `max_message_bytes` per WebSocket message, `max_upload_bytes`
per uploaded file, `idle_timeout` seconds without a message.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import importlib.util
import io
import itertools
import logging
import os
import shutil
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from fastapi import FastAPI, File, Form, Request, UploadFile, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse, JSONResponse
from PIL import Image
from pydantic import ValidationError
from starlette.background import BackgroundTask

from rtavatar import FPS
from rtavatar.checkpoints import shipped_model
from rtavatar.engine import Avatar, Session
from rtavatar.engine.files import write_generated
from rtavatar.engine.offline import Cancelled
from rtavatar.engine.session import MAX_PUSH_SECONDS
from rtavatar.engine.vad import check_voice
from rtavatar.errors import MediaError, MediaSizeError, RTAvatarError
from rtavatar.media import image_from_bytes, read_audio, read_image, validate_audio, validate_image
from rtavatar.models.conditioning import parse_expression
from rtavatar.photo.options import PasteOptions
from rtavatar.server.capacity import Capacity, kind_of, measure
from rtavatar.server.security import AccessGuard, is_loopback
from rtavatar.server.protocol import CLIENT_MESSAGE, VERSION, Offer, Paste, SetExpression, SetState, Start, pack_frame

log = logging.getLogger("rtavatar.server")
_ids = itertools.count(1)


SHUTDOWN_SECONDS = 5


@dataclass
class ServerConfig:
    max_sessions: int = 4
    max_message_bytes: int = 12 << 20  # a start message carries the portrait (base64)
    max_upload_bytes: int = 32 << 20
    idle_timeout: float = 120.0
    max_audio_ahead: float = 30.0  # s of audio a client may push ahead of the frames sent (backpressure)
    token: str | None = None  # required on every /v1/ route when set (server/security.py)
    max_generate_jobs: int = 1  # concurrent POST /v1/generate jobs (each on one core, below live sessions)
    capacity: dict[str, float] | None = None  # one session's fps by kind (server/capacity.measure); None: only max_sessions
    allowed_origins: tuple[str, ...] = ()  # pages besides the server's own and loopback ones that may drive it
    connect_timeout: float = 20.0  # s for a WebRTC offer's peer to connect (ICE + DTLS) before its session is released
    model: str = ""
    voice: str = "silero"  # what a session's `auto` state listens to the avatar's audio with ("energy" without silero-vad)


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the session's fields
    (`session`, `transport`, `event`, counts) when a record carries them."""

    FIELDS = ("session", "transport", "event", "frames", "fps", "first_frame_ms", "live_sessions", "error")

    def format(self, record: logging.LogRecord) -> str:
        import json

        out = {"t": round(record.created, 3), "level": record.levelname, "logger": record.name, "msg": record.getMessage()}
        out.update({k: getattr(record, k) for k in self.FIELDS if hasattr(record, k)})
        return json.dumps(out, default=str)


def session_log(sid: int, transport: str, event: str, **fields: Any) -> None:
    """A structured per-session log line (readable as text, complete as JSON with --log-json)."""
    detail = " ".join(f"{k}={v}" for k, v in fields.items())
    log.info("session %d %s %s%s", sid, transport, event, f" {detail}" if detail else "",
             extra={"session": sid, "transport": transport, "event": event, **fields})


def _error(message: str, fatal: bool = False) -> dict[str, Any]:
    return {"type": "error", "error": message, "fatal": fatal}


def _short(e: ValidationError) -> str:
    parts = []
    for err in e.errors()[:3]:
        where = ".".join(str(p) for p in err.get("loc", ())) or "message"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)


def decode_portrait(data: str) -> np.ndarray:
    """A base64 picture -> RGB array; its header's dimensions are checked before it is decoded
    (media.image_from_bytes). Blocking: call it off the event loop."""
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as e:
        raise RTAvatarError("portrait: not valid base64") from e
    try:
        arr = image_from_bytes(raw, "portrait")
    except MediaSizeError:
        raise
    except MediaError as e:
        raise RTAvatarError(f"portrait: not a readable image ({e.__class__.__name__})") from e
    return validate_image(arr, name="portrait")


def request_audio(wav: np.ndarray) -> np.ndarray:
    """An upload's audio, refused when longer than one request may carry."""
    if len(wav) > MAX_PUSH_SECONDS * 16_000:
        raise RTAvatarError(f"audio is {len(wav) / 16_000:.0f} s long; one request takes at most {MAX_PUSH_SECONDS:.0f} s")
    return wav


async def save_upload(up: UploadFile, name: str, directory: Path, limit: int) -> Path:
    """An uploaded file, size-checked, written to `directory` under its own suffix."""
    data = await up.read(limit + 1)
    if len(data) > limit:
        raise RTAvatarError(f"{name}: larger than {limit >> 20} MB")
    path = directory / f"{name}{Path(up.filename or '').suffix.lower()[:8]}"
    path.write_bytes(data)
    return path


def create_app(avatar: Avatar, cfg: ServerConfig | None = None) -> FastAPI:
    cfg = replace(cfg) if cfg is not None else ServerConfig()  # a copy: the caller's config is left as given
    check_voice(cfg.voice)  # fail at start-up, not in the first session
    if cfg.voice == "silero" and importlib.util.find_spec("silero_vad") is None:
        log.warning("silero-vad is not installed: the auto state uses the energy rule")
        cfg.voice = "energy"
    app = FastAPI(title="rtavatar", version=str(VERSION), description="Real-time talking-portrait video (docs/PROTOCOL.md).")
    app.add_middleware(AccessGuard, token=cfg.token, allowed_origins=tuple(cfg.allowed_origins))
    live: set[int] = set()  # every transport's sessions: one count, one capacity
    cap = Capacity(dict(cfg.capacity or {}))

    def take_slot(sid: int, paste: PasteOptions | None) -> str | None:
        """Admit a session of any transport (None), or say why not: the --max-sessions bound, then capacity."""
        if len(live) >= cfg.max_sessions:
            return f"server busy: {cfg.max_sessions} sessions in use (--max-sessions); retry in a few seconds"
        busy = cap.admit(sid, kind_of(paste))
        if busy is None:
            live.add(sid)
        return busy

    def free_slot(sid: int) -> None:
        live.discard(sid)
        cap.release(sid)

    static = Path(__file__).parent / "static"
    portraits = Path(__file__).parents[1] / "assets" / "portraits"
    peers: dict[int, Any] = {}

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(static / "index.html", media_type="text/html")

    @app.get("/static/{name}", include_in_schema=False)
    async def static_file(name: str) -> Any:
        p = static / name
        if "/" in name or not p.is_file():
            return JSONResponse(_error("not found"), status_code=404)
        return FileResponse(p)

    @app.get("/v1/portraits")
    async def list_portraits() -> dict[str, list[str]]:
        return {"portraits": sorted(p.stem for p in portraits.glob("*.jpg"))}

    def bundled(name: str) -> Path:
        p = portraits / f"{name}.jpg"
        if "/" in name or not p.is_file():
            raise RTAvatarError(f"no bundled portrait {name!r}")
        return p

    @app.get("/v1/portraits/{name}")
    async def get_portrait(name: str) -> Any:
        try:
            return FileResponse(bundled(name), media_type="image/jpeg")
        except RTAvatarError as e:
            return JSONResponse(_error(str(e)), status_code=404)

    @app.post("/v1/webrtc/offer", responses={400: {"description": "bad input, with the reason"}})
    async def webrtc_offer(body: dict[str, Any]) -> Any:
        """WebRTC signalling for the page: the browser's offer -> the server's answer."""
        from rtavatar.server.webrtc import WebRTCPeer

        try:
            try:
                offer = Offer.model_validate(body)
            except ValidationError as e:
                raise RTAvatarError(f"bad offer: {_short(e)}") from None
            src = offer.portrait
            if src.startswith("bundled:"):
                image = read_image(bundled(src.removeprefix("bundled:")))
            else:
                image = await asyncio.to_thread(decode_portrait, src)
            sid = next(_ids)
            busy = take_slot(sid, offer.paste.options())
            if busy:
                return JSONResponse(_error(busy), status_code=503, headers={"Retry-After": "5"})
            session: Session | None = None
            peer: WebRTCPeer | None = None
            try:
                session = await asyncio.to_thread(avatar.session, image, align=offer.align, paste=offer.paste.options(),
                                                  live=True, voice=cfg.voice)
                peer = WebRTCPeer(session)
                try:
                    answer = await peer.answer(offer.sdp, "offer")
                except Exception as e:  # aiortc's parse / negotiation errors
                    raise RTAvatarError(f"bad offer: the SDP could not be answered ({e.__class__.__name__}: {e})") from e
            except BaseException:  # release everything the offer started
                free_slot(sid)
                if peer is not None:
                    await peer.close()
                elif session is not None:
                    session.cancel()
                raise
            peers[sid] = peer

            async def connect_or_release() -> None:  # an answered offer whose peer never connects holds a slot
                await asyncio.sleep(cfg.connect_timeout)
                if peer.pc.connectionState != "connected" and not peer.closed.is_set():
                    session_log(sid, "webrtc", "connect timeout", live_sessions=len(live))
                    await peer.close()

            asyncio.ensure_future(connect_or_release())

            async def reap() -> None:
                await peer.closed.wait()
                peers.pop(sid, None)
                free_slot(sid)
                session_log(sid, "webrtc", "closed", frames=session.times.frames, live_sessions=len(live))

            asyncio.ensure_future(reap())
            session_log(sid, "webrtc", "started", live_sessions=len(live))
            return {**answer, "session": sid, "resolution": avatar.resolution}
        except (RTAvatarError, ValueError) as e:
            return JSONResponse(_error(" ".join(str(e).split())), status_code=400)

    @app.post("/v1/webrtc/{sid}/audio", responses={400: {"description": "bad input"}, 404: {"description": "no such session"}})
    async def webrtc_audio(sid: int, audio: UploadFile = File(...)) -> Any:
        """Speech for a page session to say (any audio file)."""
        peer = peers.get(sid)
        if peer is None:
            return JSONResponse(_error(f"no session {sid}"), status_code=404)
        with tempfile.TemporaryDirectory(prefix="rtavatar-say-") as tmp:
            try:
                f = await save_upload(audio, "audio", Path(tmp), cfg.max_upload_bytes)
                wav = request_audio(validate_audio(await asyncio.to_thread(read_audio, f), 16_000, name="audio"))
                peer.push(wav)
                return {"seconds": round(len(wav) / 16000, 2)}
            except RTAvatarError as e:
                return JSONResponse(_error(str(e)), status_code=400)

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "model": cfg.model, "resolution": avatar.resolution, "fps": FPS,
                "sessions": len(live), "max_sessions": cfg.max_sessions, "load": cap.load,
                "capacity": {k: cap.sessions_of(k) for k in cap.rates}, "generate_jobs": len(jobs),
                "max_generate_jobs": cfg.max_generate_jobs, "protocol": VERSION}

    # Offline jobs: their own threads (never the default executor live sessions use), at most
    # max_generate_jobs at once, each on one core at a lower OS priority, cancelled when the
    # client goes away or the server stops; their temp directories go with them.
    job_pool = ThreadPoolExecutor(max_workers=cfg.max_generate_jobs, thread_name_prefix="rtavatar-job")
    jobs: dict[Path, threading.Event] = {}  # temp dir -> cancel flag of each running job

    def run_job(cancel: threading.Event, work: Callable[..., int]) -> int:
        torch.set_num_threads(1)  # this thread only: one core for the job, the rest for live sessions
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)  # Linux: per thread
        except (AttributeError, OSError):
            pass
        return work(cancelled=cancel.is_set)

    @app.on_event("shutdown")
    async def stop_jobs() -> None:
        for tmp, cancel in list(jobs.items()):
            cancel.set()
            shutil.rmtree(tmp, ignore_errors=True)
        job_pool.shutdown(wait=False, cancel_futures=True)

    @app.post("/v1/generate", response_class=FileResponse, responses={400: {"description": "bad input, with the reason"},
                                                                      503: {"description": "busy: retry later"}})
    async def generate(request: Request, portrait: UploadFile = File(...), audio: UploadFile = File(...),
                       steps: int | None = Form(None), state: str = Form("auto"), expression: str = Form(""),
                       align: str = Form("face"),
                       paste: str = Form("{}", description="the photo renderer's options as JSON (protocol.Paste)"),
                       seed: int = Form(0)) -> Any:
        if len(jobs) >= cfg.max_generate_jobs:
            return JSONResponse(_error(f"busy: {len(jobs)} generate job(s) running; retry in a few seconds"), status_code=503,
                                headers={"Retry-After": "5"})
        tmp = Path(tempfile.mkdtemp(prefix="rtavatar-gen-"))
        cancel = jobs[tmp] = threading.Event()

        def cleanup() -> None:  # after the response is sent, or on any error
            jobs.pop(tmp, None)
            shutil.rmtree(tmp, ignore_errors=True)

        try:
            files = {name: await save_upload(up, name, tmp, cfg.max_upload_bytes)
                     for name, up in (("portrait", portrait), ("audio", audio))}
            if state not in ("auto", "speak", "listen", "idle"):
                raise RTAvatarError(f"state {state!r}: use auto, speak, listen or idle")
            if steps is not None and not 1 <= steps <= 50:
                raise RTAvatarError("steps must be in [1, 50]")
            if not 0 <= seed < 1 << 63:
                raise RTAvatarError("seed must be in [0, 2**63)")
            expr = parse_expression(expression)
            try:
                options = Paste.model_validate_json(paste).options()
            except ValidationError as e:
                raise RTAvatarError(f"bad paste options: {_short(e)}") from None
            image = await asyncio.to_thread(read_image, files["portrait"])  # header checked before decoding; off the loop
            wav = request_audio(validate_audio(await asyncio.to_thread(read_audio, files["audio"]), 16_000, name="audio"))
            out = tmp / "out.mp4"
            work = partial(write_generated, out, avatar, image, wav, align=align, paste=options, steps=steps,
                           state=state, expression=expr, seed=seed)
            job = asyncio.get_running_loop().run_in_executor(job_pool, run_job, cancel, work)
            while not job.done():  # a client that gave up cancels its job
                await asyncio.wait({job}, timeout=0.25)
                if not job.done() and await request.is_disconnected():
                    cancel.set()
            try:
                n = job.result()
            except Cancelled:
                log.info("generate: cancelled (the client went away or the server is stopping)")
                cleanup()
                return JSONResponse(_error("cancelled"), status_code=499)
            log.info("generate: %d frames", n)
            return FileResponse(out, media_type="video/mp4", filename="rtavatar.mp4", background=BackgroundTask(cleanup))
        except RTAvatarError as e:
            cleanup()
            return JSONResponse(_error(str(e).replace(f"{tmp}/", "")), status_code=400)  # the upload's name, not a server path
        except BaseException:
            cleanup()
            raise

    @app.websocket("/v1/stream")
    async def stream(ws: WebSocket) -> None:
        await ws.accept()
        sid = next(_ids)
        send_lock = asyncio.Lock()
        session: Session | None = None
        start: Start | None = None
        sender: asyncio.Task | None = None

        async def send(obj: dict[str, Any] | bytes) -> None:
            async with send_lock:
                if isinstance(obj, bytes):
                    await ws.send_bytes(obj)
                else:
                    await ws.send_json(obj)

        async def send_frames(s: Session, quality: int) -> None:
            it = s.frames()
            last_state, n, t0 = None, 0, time.perf_counter()
            while (f := await asyncio.to_thread(next, it, None)) is not None:
                buf = io.BytesIO()
                await asyncio.to_thread(lambda: Image.fromarray(f.image).save(buf, "JPEG", quality=quality))
                if f.state != last_state:
                    await send({"type": "state", "state": f.state, "index": f.index})
                    last_state = f.state
                await send(pack_frame(f.index, f.pts, buf.getvalue(), f.audio))
                n += 1
                if n == 1:
                    await send({"type": "first_frame", "ms": round(s.first_frame_ms or 0.0, 1)})
            await send({"type": "end", "frames": n, "fps": round(n / max(time.perf_counter() - t0, 1e-9), 2)})

        try:
            while True:
                try:
                    msg = await asyncio.wait_for(ws.receive(), timeout=cfg.idle_timeout)
                except asyncio.TimeoutError:
                    await send(_error(f"no message for {cfg.idle_timeout:g} s: closing", fatal=True))
                    break
                if msg["type"] == "websocket.disconnect":
                    break
                data, text = msg.get("bytes"), msg.get("text")
                if data is not None:
                    if len(data) > cfg.max_message_bytes:
                        await send(_error(f"message of {len(data)} bytes is over the {cfg.max_message_bytes}-byte limit"))
                    elif session is None or start is None:
                        await send(_error("binary audio before start: send a start message first"))
                    else:
                        try:
                            session.push_audio(data, sample_rate=start.sample_rate)
                        except RTAvatarError as e:
                            await send(_error(str(e)))
                    continue
                if text is None:
                    continue
                if len(text) > cfg.max_message_bytes:
                    await send(_error(f"message of {len(text)} bytes is over the {cfg.max_message_bytes}-byte limit"))
                    continue
                try:
                    m = CLIENT_MESSAGE.validate_json(text)
                except ValidationError as e:
                    await send(_error(f"bad message: {_short(e)}"))
                    continue
                try:
                    if isinstance(m, Start):
                        if session is not None:
                            await send(_error("already started"))
                            continue
                        image = await asyncio.to_thread(decode_portrait, m.portrait)
                        expr = m.expression.values()
                        busy = take_slot(sid, m.paste.options())
                        if busy:
                            await send({**_error(busy, fatal=True), "retry_after": 5})
                            break
                        try:
                            session = await asyncio.to_thread(avatar.session, image, align=m.align, paste=m.paste.options(),
                                                              steps=m.steps, state=m.state, expression=expr, max_ahead=cfg.max_audio_ahead,
                                                              seed=m.seed, live=m.live, voice=cfg.voice)
                        except BaseException:
                            free_slot(sid)
                            raise
                        start = m
                        await send({"type": "ready", "session": sid, "resolution": avatar.resolution, "fps": FPS,
                                    "lookahead_ms": session.lookahead_ms, "protocol": VERSION})
                        sender = asyncio.create_task(send_frames(session, m.jpeg_quality))
                        session_log(sid, "websocket", "started", live_sessions=len(live))
                    elif session is None:
                        await send(_error(f"{m.type} before start: send a start message first"))
                    elif isinstance(m, SetState):
                        session.set_state(m.state)
                    elif isinstance(m, SetExpression):
                        session.set_expression(**m.expression.values())
                    elif m.type == "interrupt":
                        session.interrupt()
                    elif m.type == "flush":
                        session.flush()
                    elif m.type == "end":
                        session.close()
                        if sender is not None:
                            await sender
                        break
                except (RTAvatarError, ValueError) as e:  # a bad start can be retried on the same connection
                    await send(_error(str(e)))
        except WebSocketDisconnect:
            pass
        finally:
            if session is not None:
                session.cancel()
            if sender is not None and not sender.done():
                sender.cancel()
            free_slot(sid)
            session_log(sid, "websocket", "closed", frames=session.times.frames if session else 0, live_sessions=len(live))
            try:
                await ws.close()
            except (RuntimeError, WebSocketDisconnect, OSError):  # the client closed first: nothing to report
                pass

    return app


def load_avatar(checkpoint: str | None, precision: str = "fp32") -> tuple[Avatar, str]:
    """The model to serve: a run, else the shipped model, else random tiny weights (said so)."""
    if checkpoint:  # named, not located: the page and /healthz show it to every client
        return Avatar.load(checkpoint, precision=precision), Path(checkpoint).name
    shipped = shipped_model()
    if shipped:
        return Avatar.load(shipped, precision=precision), f"shipped {Path(shipped).name}"
    log.warning("no --checkpoint and no shipped model: serving RANDOM tiny weights (the frames are noise)")
    return Avatar.random("tiny", precision=precision), "random weights, tiny config"


def warm_up(avatar: Avatar, seconds: float = 2.0) -> None:
    """Run every chunk shape once (one-time kernel set-up), so the first client does not stall."""
    t = time.perf_counter()
    r = avatar.resolution
    s = avatar.session(np.full((r, r, 3), 128, np.uint8), align="center")
    s.push_audio(np.zeros(int(seconds * 16000), np.float32))
    s.close()
    for _ in s.frames(timeout=120):
        pass
    log.info("warmed up in %.1f s", time.perf_counter() - t)


def serve(host: str = "127.0.0.1", port: int = 8000, checkpoint: str | None = None, max_sessions: int = 4,
          precision: str = "auto", log_json: bool = False, token: str | None = None,
          allowed_origins: tuple[str, ...] = ()) -> None:
    """Serve one model. `token` (else $RTAVATAR_TOKEN) is required on /v1/ routes when set, and
    binding to an address other than loopback without one is refused."""
    import os

    import uvicorn

    token = token or os.environ.get("RTAVATAR_TOKEN") or None
    if not is_loopback(host) and token is None:
        raise RTAvatarError(f"--host {host} exposes the server beyond this machine: give --token (or RTAVATAR_TOKEN) "
                            "so that only clients with it can use it")

    if log_json:
        handler = logging.StreamHandler()
        handler.setFormatter(JsonLogFormatter())
        root = logging.getLogger()
        root.handlers[:] = [handler]

    avatar, model = load_avatar(checkpoint, precision)
    warm_up(avatar)
    from rtavatar.assets import SAMPLE_PORTRAIT

    capacity = measure(avatar, str(SAMPLE_PORTRAIT))  # a few seconds: what this machine sustains, per kind of session
    cfg = ServerConfig(max_sessions=max_sessions, model=model, token=token, allowed_origins=tuple(allowed_origins),
                       capacity=capacity)
    log.info("serving %s (%s) on http://%s:%d (WebSocket /v1/stream, POST /v1/generate, docs at /docs)", model, avatar.precision,
             host, port)
    # The transport's own limit sits above ours, so an oversized message gets our non-fatal refusal (docs/PROTOCOL.md).
    # Graceful shutdown (SIGTERM / Ctrl-C): open connections get SHUTDOWN_SECONDS, then the shutdown
    # hook cancels generate jobs and removes their temp directories.
    uvicorn.run(create_app(avatar, cfg), host=host, port=port, ws_max_size=2 * cfg.max_message_bytes, log_level="info",
                timeout_graceful_shutdown=SHUTDOWN_SECONDS)
