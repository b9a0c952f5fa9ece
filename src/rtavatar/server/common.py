"""What the server's routes share: the config, the hub that owns every live session, error
bodies, structured logs, and the checks a picture, an upload or audio passes before use."""

from __future__ import annotations

import base64
import binascii
import itertools
import logging
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import UploadFile
from pydantic import ValidationError

from rtavatar.engine import Avatar
from rtavatar.engine.session import MAX_PUSH_SECONDS
from rtavatar.errors import MediaError, MediaSizeError, RTAvatarError
from rtavatar.media import image_from_bytes, read_audio, validate_audio, validate_image
from rtavatar.photo.options import PasteOptions
from rtavatar.server.capacity import Capacity, kind_of

log = logging.getLogger("rtavatar.server")
SESSION_IDS = itertools.count(1)
PORTRAITS = Path(__file__).parents[1] / "assets" / "portraits"


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
    capacity: dict[str, float] | None = None  # one live session's share of the machine by kind (capacity.measure); None: only max_sessions
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


def error_body(message: str, fatal: bool = False) -> dict[str, Any]:
    return {"type": "error", "error": message, "fatal": fatal}


def validation_summary(e: ValidationError) -> str:
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


def read_upload_audio(path: Path) -> np.ndarray:
    """An uploaded audio file at 16 kHz, refused from its declared length (before decoding) when
    longer than one request may carry, else as soon as its decoding passes that. Blocking."""
    return validate_audio(read_audio(path, max_seconds=MAX_PUSH_SECONDS), 16_000, name="audio")


async def save_upload(up: UploadFile, name: str, directory: Path, limit: int) -> Path:
    """An uploaded file, size-checked, written to `directory` under its own suffix."""
    data = await up.read(limit + 1)
    if len(data) > limit:
        raise RTAvatarError(f"{name}: larger than {limit >> 20} MB")
    path = directory / f"{name}{Path(up.filename or '').suffix.lower()[:8]}"
    path.write_bytes(data)
    return path


class Hub:
    """What every route shares: the model, the config, and the one owner of live sessions: all
    transports count against one `--max-sessions` bound and one measured capacity."""

    def __init__(self, avatar: Avatar, cfg: ServerConfig) -> None:
        self.avatar, self.cfg = avatar, cfg
        self.live: set[int] = set()
        self.cap = Capacity(dict(cfg.capacity or {}))
        self.peers: dict[int, Any] = {}  # WebRTC sessions' peers
        self.jobs: dict[Path, threading.Event] = {}  # temp dir -> cancel flag of each running /v1/generate job

    def take_slot(self, sid: int, paste: PasteOptions | None) -> str | None:
        """Admit a session of any transport (None), or say why not: the --max-sessions bound, then capacity."""
        if len(self.live) >= self.cfg.max_sessions:
            return f"server busy: {self.cfg.max_sessions} sessions in use (--max-sessions); retry in a few seconds"
        busy = self.cap.admit(sid, kind_of(paste))
        if busy is None:
            self.live.add(sid)
        return busy

    def free_slot(self, sid: int) -> None:
        self.live.discard(sid)
        self.cap.release(sid)

    def stop_jobs(self) -> None:
        """Cancel every running /v1/generate job (a stopping server: called at the signal, so a
        job does not hold the shutdown) and remove their temp directories."""
        for tmp, cancel in list(self.jobs.items()):
            cancel.set()
            shutil.rmtree(tmp, ignore_errors=True)

    @staticmethod
    def bundled(name: str) -> Path:
        p = PORTRAITS / f"{name}.jpg"
        if "/" in name or not p.is_file():
            raise RTAvatarError(f"no bundled portrait {name!r}")
        return p
