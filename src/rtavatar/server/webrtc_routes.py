"""The page's WebRTC signalling: `POST /v1/webrtc/offer` (offer -> answer; the session is
released on any error, on a peer that never connects, and when the peer closes) and
`POST /v1/webrtc/{sid}/audio` (speech for a page session to say)."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

from fastapi import FastAPI, File, UploadFile
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from rtavatar.engine import Session
from rtavatar.errors import RTAvatarError
from rtavatar.media import read_image
from rtavatar.server.common import SESSION_IDS, Hub, decode_portrait, error_body, read_upload_audio, save_upload, session_log, validation_summary
from rtavatar.server.protocol import Offer


def register(app: FastAPI, hub: Hub) -> None:
    @app.post("/v1/webrtc/offer", responses={400: {"description": "bad input, with the reason"}})
    async def webrtc_offer(body: dict[str, Any]) -> Any:
        """WebRTC signalling for the page: the browser's offer -> the server's answer."""
        from rtavatar.server.webrtc import WebRTCPeer

        try:
            try:
                offer = Offer.model_validate(body)
            except ValidationError as e:
                raise RTAvatarError(f"bad offer: {validation_summary(e)}") from None
            src = offer.portrait
            if src.startswith("bundled:"):
                image = read_image(hub.bundled(src.removeprefix("bundled:")))
            else:
                image = await asyncio.to_thread(decode_portrait, src)
            sid = next(SESSION_IDS)
            busy = hub.take_slot(sid, offer.paste.options())
            if busy:
                return JSONResponse(error_body(busy), status_code=503, headers={"Retry-After": "5"})
            session: Session | None = None
            peer: WebRTCPeer | None = None
            try:
                session = await asyncio.to_thread(hub.avatar.session, image, align=offer.align, paste=offer.paste.options(),
                                                  live=True, voice=hub.cfg.voice)
                peer = WebRTCPeer(session)
                try:
                    answer = await peer.answer(offer.sdp, "offer")
                except Exception as e:  # aiortc's parse / negotiation errors
                    raise RTAvatarError(f"bad offer: the SDP could not be answered ({e.__class__.__name__}: {e})") from e
            except BaseException:  # release everything the offer started
                hub.free_slot(sid)
                if peer is not None:
                    await peer.close()
                elif session is not None:
                    session.cancel()
                raise
            hub.peers[sid] = peer

            async def connect_or_release() -> None:  # an answered offer whose peer never connects holds a slot
                await asyncio.sleep(hub.cfg.connect_timeout)
                if peer.pc.connectionState != "connected" and not peer.closed.is_set():
                    session_log(sid, "webrtc", "connect timeout", live_sessions=len(hub.live))
                    await peer.close()

            asyncio.ensure_future(connect_or_release())

            async def reap() -> None:
                await peer.closed.wait()
                hub.peers.pop(sid, None)
                hub.free_slot(sid)
                session_log(sid, "webrtc", "closed", frames=session.times.frames, live_sessions=len(hub.live))

            asyncio.ensure_future(reap())
            session_log(sid, "webrtc", "started", live_sessions=len(hub.live))
            return {**answer, "session": sid, "resolution": hub.avatar.resolution}
        except (RTAvatarError, ValueError) as e:
            return JSONResponse(error_body(" ".join(str(e).split())), status_code=400)

    @app.post("/v1/webrtc/{sid}/audio", responses={400: {"description": "bad input"}, 404: {"description": "no such session"}})
    async def webrtc_audio(sid: int, audio: UploadFile = File(...)) -> Any:
        """Speech for a page session to say (any audio file)."""
        peer = hub.peers.get(sid)
        if peer is None:
            return JSONResponse(error_body(f"no session {sid}"), status_code=404)
        with tempfile.TemporaryDirectory(prefix="rtavatar-say-") as tmp:
            try:
                f = await save_upload(audio, "audio", Path(tmp), hub.cfg.max_upload_bytes)
                wav = await asyncio.to_thread(read_upload_audio, f)
                peer.push(wav)
                return {"seconds": round(len(wav) / 16000, 2)}
            except RTAvatarError as e:
                return JSONResponse(error_body(str(e).replace(f"{tmp}/", "")), status_code=400)  # no server path

