"""A Python client for `rtavatar serve`'s WebSocket protocol (docs/PROTOCOL.md).

    from rtavatar.client import AvatarClient
    with AvatarClient("ws://127.0.0.1:8000/v1/stream") as c:
        c.start("me.jpg")
        c.push(pcm_16k_float32)        # any chunk size
        c.end()                        # then read what is left
        frames = list(c.frames())      # ClientFrame(index, pts, jpeg, audio, state)
"""

from __future__ import annotations

import base64
import json
import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from rtavatar.server.protocol import unpack_frame


@dataclass
class ClientFrame:
    index: int
    pts: float
    jpeg: bytes
    audio: np.ndarray  # float32, the 640 samples this frame shows
    state: str

    def image(self) -> np.ndarray:
        import io

        from PIL import Image

        return np.asarray(Image.open(io.BytesIO(self.jpeg)).convert("RGB"))


class AvatarClient:
    def __init__(self, url: str, open_timeout: float = 30.0, token: str | None = None) -> None:
        from websockets.sync.client import connect

        headers = {"Authorization": f"Bearer {token}"} if token else None
        self._conn = connect(url, open_timeout=open_timeout, max_size=None, additional_headers=headers)
        self.ws = self._conn.__enter__()  # held open until close()
        self.messages: list[dict[str, Any]] = []  # every JSON message received, in order
        self._frames: queue.Queue = queue.Queue()
        self._state = "idle"
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._ready = threading.Event()
        self.ready: dict[str, Any] | None = None
        self._reader.start()

    def _read(self) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            for msg in self.ws:
                if isinstance(msg, bytes):
                    index, pts, jpeg, audio = unpack_frame(msg)
                    self._frames.put(ClientFrame(index, pts, jpeg, audio, self._state))
                    continue
                m = json.loads(msg)
                self.messages.append(m)
                if m["type"] == "state":
                    self._state = m["state"]
                elif m["type"] == "ready":
                    self.ready = m
                    self._ready.set()
                elif m["type"] == "end" or (m["type"] == "error" and (m.get("fatal") or self.ready is None)):
                    self._ready.set()  # a refused start answers at once (the connection stays for a retry)
        except ConnectionClosed:
            pass
        finally:
            self._ready.set()
            self._frames.put(None)

    def send(self, obj: dict[str, Any]) -> None:
        self.ws.send(json.dumps(obj))

    def start(self, portrait: str | Path | bytes, timeout: float = 60.0, **options: Any) -> dict[str, Any]:
        data = portrait if isinstance(portrait, bytes) else Path(portrait).read_bytes()
        self._ready.clear()
        self.send({"type": "start", "portrait": base64.b64encode(data).decode(), **options})
        self._ready.wait(timeout)
        if self.ready is None:
            errors = [m["error"] for m in self.messages if m["type"] == "error"]
            raise RuntimeError(f"the server did not start the session: {errors[-1] if errors else 'no reply'}")
        return self.ready

    def push(self, pcm: np.ndarray) -> None:
        """float32 in [-1, 1] (sent as int16) or int16 samples at the start's sample rate."""
        a = np.asarray(pcm)
        if a.dtype != np.int16:
            a = (np.clip(a, -1, 1) * 32767).round().astype(np.int16)
        self.ws.send(a.astype("<i2").tobytes())

    def set_state(self, state: str) -> None:
        self.send({"type": "state", "state": state})

    def set_expression(self, **controls: float) -> None:
        self.send({"type": "expression", "expression": controls})

    def interrupt(self) -> None:
        self.send({"type": "interrupt"})

    def flush(self) -> None:
        self.send({"type": "flush"})

    def end(self) -> None:
        self.send({"type": "end"})

    def frames(self, timeout: float | None = 120.0) -> Iterator[ClientFrame]:
        """Frames as they arrive, until the server ends the session (or `timeout` s of silence)."""
        while True:
            try:
                f = self._frames.get(timeout=timeout)
            except queue.Empty:
                return
            if f is None:
                self._frames.put(None)
                return
            yield f

    def close(self) -> None:
        self._conn.__exit__(None, None, None)

    def __enter__(self) -> "AvatarClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
