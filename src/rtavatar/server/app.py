"""`rtavatar serve`: one loaded Avatar shared by every session, over HTTP, WebSocket and WebRTC.

The routes live by transport: http_routes (the page, `/healthz`, `POST /v1/generate` as
bounded jobs), ws_routes (`WS /v1/stream` for programs), webrtc_routes (the page's signalling).
They share one `Hub` (common.py) that owns every live session: one `--max-sessions` bound and
one capacity measured at start-up (capacity.py) for all transports. Who may call at all:
security.py (allowed origins, an optional token). Limits are `ServerConfig`'s.
"""

from __future__ import annotations

import importlib.util
import logging
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from fastapi import FastAPI

from rtavatar.checkpoints import shipped_model
from rtavatar.engine import Avatar
from rtavatar.engine.vad import check_voice
from rtavatar.errors import RTAvatarError
from rtavatar.server import http_routes, webrtc_routes, ws_routes
from rtavatar.server.capacity import calibrate, measure
from rtavatar.server.common import SHUTDOWN_SECONDS, Hub, JsonLogFormatter, ServerConfig, decode_portrait  # noqa: F401
from rtavatar.server.protocol import VERSION
from rtavatar.server.security import AccessGuard, is_loopback

log = logging.getLogger("rtavatar.server")


def create_app(avatar: Avatar, cfg: ServerConfig | None = None) -> FastAPI:
    """The server around one loaded model: the routes of each transport (http_routes,
    webrtc_routes, ws_routes) on one Hub that owns every live session."""
    cfg = replace(cfg) if cfg is not None else ServerConfig()  # a copy: the caller's config is left as given
    check_voice(cfg.voice)  # fail at start-up, not in the first session
    if cfg.voice == "silero" and importlib.util.find_spec("silero_vad") is None:
        log.warning("silero-vad is not installed: the auto state uses the energy rule")
        cfg.voice = "energy"
    app = FastAPI(title="rtavatar", version=str(VERSION), description="Real-time talking-portrait video (docs/PROTOCOL.md).")
    app.add_middleware(AccessGuard, token=cfg.token, allowed_origins=tuple(cfg.allowed_origins))
    hub = app.state.hub = Hub(avatar, cfg)
    for routes in (http_routes, webrtc_routes, ws_routes):
        routes.register(app, hub)
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

    rates = measure(avatar, str(SAMPLE_PORTRAIT))  # a few seconds: each kind's throughput on this machine
    cfg = ServerConfig(max_sessions=max_sessions, model=model, token=token, allowed_origins=tuple(allowed_origins))
    log.info("serving %s (%s) on http://%s:%d (WebSocket /v1/stream, POST /v1/generate, docs at /docs)", model, avatar.precision,
             host, port)
    # The transport's own limit sits above ours, so an oversized message gets our non-fatal refusal (docs/PROTOCOL.md).
    # Graceful shutdown (SIGTERM / Ctrl-C): open connections get SHUTDOWN_SECONDS, then the shutdown
    # hook cancels generate jobs and removes their temp directories.
    app = create_app(avatar, cfg)

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: object) -> None:  # at SIGTERM / Ctrl-C: jobs stop now, not after the grace period
            app.state.hub.stop_jobs()
            super().handle_exit(sig, frame)  # type: ignore[arg-type]

    server = Server(uvicorn.Config(app, host=host, port=port, ws_max_size=2 * cfg.max_message_bytes, log_level="info",
                                   timeout_graceful_shutdown=SHUTDOWN_SECONDS))
    local = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104 - where this process reaches itself
    calibrate(app.state.hub.cap, rates, f"ws://{local}:{port}/v1/stream", SAMPLE_PORTRAIT.read_bytes(), token,
              ready=lambda: server.started)  # the live fit, over the running server (capacity.py)
    server.run()
