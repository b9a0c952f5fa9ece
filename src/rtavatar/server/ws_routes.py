"""`WS /v1/stream`: a live session for programs (docs/PROTOCOL.md; `rtavatar.client`). Every
malformed message gets an `error` and the connection keeps going (a refused `start` can be
sent again); only a full server, an idle timeout or the client ends it."""

from __future__ import annotations

import asyncio
import io
import time
from typing import Any

from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from PIL import Image
from pydantic import ValidationError

from rtavatar import FPS
from rtavatar.engine import Session
from rtavatar.errors import RTAvatarError
from rtavatar.server.common import SESSION_IDS, Hub, decode_portrait, error_body, session_log, validation_summary
from rtavatar.server.protocol import CLIENT_MESSAGE, VERSION, SetExpression, SetState, Start, pack_frame


def register(app: FastAPI, hub: Hub) -> None:
    @app.websocket("/v1/stream")
    async def stream(ws: WebSocket) -> None:
        await ws.accept()
        sid = next(SESSION_IDS)
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
            try:
                await stream_frames(s, quality)
            except (WebSocketDisconnect, RuntimeError, OSError):  # the client went away mid-send: the session is ended below
                pass

        async def stream_frames(s: Session, quality: int) -> None:
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
                    msg = await asyncio.wait_for(ws.receive(), timeout=hub.cfg.idle_timeout)
                except asyncio.TimeoutError:
                    await send(error_body(f"no message for {hub.cfg.idle_timeout:g} s: closing", fatal=True))
                    break
                if msg["type"] == "websocket.disconnect":
                    break
                data, text = msg.get("bytes"), msg.get("text")
                if data is not None:
                    if len(data) > hub.cfg.max_message_bytes:
                        await send(error_body(f"message of {len(data)} bytes is over the {hub.cfg.max_message_bytes}-byte limit"))
                    elif session is None or start is None:
                        await send(error_body("binary audio before start: send a start message first"))
                    else:
                        try:
                            session.push_audio(data, sample_rate=start.sample_rate)
                        except RTAvatarError as e:
                            await send(error_body(str(e)))
                    continue
                if text is None:
                    continue
                if len(text) > hub.cfg.max_message_bytes:
                    await send(error_body(f"message of {len(text)} bytes is over the {hub.cfg.max_message_bytes}-byte limit"))
                    continue
                try:
                    m = CLIENT_MESSAGE.validate_json(text)
                except ValidationError as e:
                    await send(error_body(f"bad message: {validation_summary(e)}"))
                    continue
                try:
                    if isinstance(m, Start):
                        if session is not None:
                            await send(error_body("already started"))
                            continue
                        image = await asyncio.to_thread(decode_portrait, m.portrait)
                        expr = m.expression.values()
                        busy = hub.take_slot(sid, m.paste.options())
                        if busy:
                            await send({**error_body(busy, fatal=True), "retry_after": 5})
                            break
                        try:
                            session = await asyncio.to_thread(hub.avatar.session, image, align=m.align, paste=m.paste.options(),
                                                              steps=m.steps, state=m.state, expression=expr, max_ahead=hub.cfg.max_audio_ahead,
                                                              seed=m.seed, live=m.live, voice=hub.cfg.voice)
                        except BaseException:
                            hub.free_slot(sid)
                            raise
                        start = m
                        await send({"type": "ready", "session": sid, "resolution": hub.avatar.resolution, "fps": FPS,
                                    "lookahead_ms": session.lookahead_ms, "protocol": VERSION})
                        sender = asyncio.create_task(send_frames(session, m.jpeg_quality))
                        session_log(sid, "websocket", "started", live_sessions=len(hub.live))
                    elif session is None:
                        await send(error_body(f"{m.type} before start: send a start message first"))
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
                    await send(error_body(str(e)))
        except WebSocketDisconnect:
            pass
        finally:
            if session is not None:
                session.cancel()
            if sender is not None and not sender.done():
                sender.cancel()
            hub.free_slot(sid)
            session_log(sid, "websocket", "closed", frames=session.times.frames if session else 0, live_sessions=len(hub.live))
            try:
                await ws.close()
            except (RuntimeError, WebSocketDisconnect, OSError):  # the client closed first: nothing to report
                pass

