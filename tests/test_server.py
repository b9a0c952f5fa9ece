"""The server with real parts: uvicorn on a loopback port, a real WebSocket client, real files."""

from __future__ import annotations

import base64
import io
import json
import logging
import socket
import threading
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("websockets")

import httpx  # noqa: E402
import uvicorn  # noqa: E402
from PIL import Image  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

from rtavatar.checkpoints import random_bundle  # noqa: E402
from rtavatar.client import AvatarClient  # noqa: E402
from rtavatar.engine import Avatar  # noqa: E402
from rtavatar.server.app import ServerConfig, create_app  # noqa: E402
from test_engine import small_net, speech  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SERVED: dict[str, Avatar] = {}  # the fixture's model, for tests that watch what the server asks of it


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    import torch

    avatar = SERVED["avatar"] = Avatar(random_bundle(small_net(), vae_channels=8, seed=1, max_new=6))
    with torch.no_grad():  # random weights barely move off the reference; louder, so frames visibly change over time
        avatar.bundle.net.dit.out.weight.mul_(40)
    cfg = ServerConfig(max_sessions=2, max_message_bytes=1 << 20, idle_timeout=20, model="random test weights",
                       connect_timeout=3.0, max_audio_ahead=10.0)
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(create_app(avatar, cfg), host="127.0.0.1", port=port, log_level="warning",
                                        ws_max_size=cfg.max_message_bytes))
    t = threading.Thread(target=srv.run, daemon=True)
    t.start()
    deadline = time.time() + 30
    while not srv.started and time.time() < deadline:
        time.sleep(0.05)
    assert srv.started
    yield f"127.0.0.1:{port}"
    srv.should_exit = True
    t.join(timeout=10)


def png(size: tuple[int, int] = (64, 64), seed: int = 0) -> bytes:
    arr = np.random.default_rng(seed).integers(0, 255, (*size[::-1], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


def test_healthz_and_openapi_list_the_endpoints(server: str) -> None:
    h = httpx.get(f"http://{server}/healthz").json()
    assert h["status"] == "ok" and h["resolution"] == 64 and h["max_sessions"] == 2
    paths = httpx.get(f"http://{server}/openapi.json").json()["paths"]
    assert "/healthz" in paths and "/v1/generate" in paths


def test_websocket_stream_covers_the_audio_in_order(server: str) -> None:
    audio = speech(1.5)
    with AvatarClient(f"ws://{server}/v1/stream") as c:
        ready = c.start(png(), align="center", live=False)
        assert ready["resolution"] == 64 and ready["fps"] == 25 and 100 < ready["lookahead_ms"] < 120
        for i in range(0, len(audio), 320):  # 20 ms chunks
            c.push(audio[i : i + 320])
        c.end()
        frames = list(c.frames())
    n = int(np.ceil(len(audio) / 640))
    assert [f.index for f in frames] == list(range(n))
    assert all(abs(f.pts - f.index / 25) < 1e-9 for f in frames)
    got = np.concatenate([f.audio for f in frames])[: len(audio)]
    assert np.abs(got - audio).max() < 2 / 32768 + 1e-6, "each frame carries its audio (int16 round trip)"
    assert frames[0].image().shape == (256, 256, 3)  # pasted back by default: the 64 px picture enlarged to MIN_PICTURE
    kinds = [m["type"] for m in c.messages]
    assert kinds[0] == "ready" and "first_frame" in kinds and kinds[-1] == "end"


def test_batch_endpoint_returns_a_playable_mp4(server: str, tmp_path: Path) -> None:
    import soundfile as sf

    from rtavatar.media import read_video

    wav = io.BytesIO()
    sf.write(wav, speech(1.0), 16000, format="WAV")
    r = httpx.post(f"http://{server}/v1/generate", files={"portrait": ("p.png", png((300, 260)), "image/png"),
                                                          "audio": ("a.wav", wav.getvalue(), "audio/wav")},
                   data={"align": "center", "expression": "smile=0.5"}, timeout=120)
    assert r.status_code == 200 and r.headers["content-type"] == "video/mp4"
    (tmp_path / "out.mp4").write_bytes(r.content)
    v = read_video(tmp_path / "out.mp4")
    assert v.frames.shape == (25, 260, 300, 3), "pasted back at the upload's own size"
    assert v.audio is not None and abs(len(v.audio) - 16000) < 1100
    bad = httpx.post(f"http://{server}/v1/generate", files={"portrait": ("p.png", b"not an image", "image/png"),
                                                            "audio": ("a.wav", wav.getvalue(), "audio/wav")}, timeout=60)
    assert bad.status_code == 400 and "error" in bad.json()
    truncated = httpx.post(f"http://{server}/v1/generate", files={"portrait": ("p.png", png()[:80], "image/png"),
                                                                  "audio": ("a.wav", wav.getvalue()[:30], "audio/wav")}, timeout=60)
    assert truncated.status_code == 400 and truncated.json()["error"]


def test_paste_options_are_one_model_on_every_route(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The photo renderer's options (protocol.Paste) reach the engine from the WebSocket start and
    /v1/generate with the same defaults (pasted back, mode warp, lips closing); unknown keys and
    wrong types are refused with the field named, on the WebRTC offer too, before any session."""
    import soundfile as sf

    from rtavatar.photo import PasteOptions

    avatar, seen = SERVED["avatar"], []

    def spy(name: str):  # noqa: ANN202
        real = getattr(avatar, name)
        return lambda *a, **kw: (seen.append((name, kw.get("paste"))), real(*a, **kw))[1]

    monkeypatch.setattr(avatar, "session", spy("session"))
    monkeypatch.setattr(avatar, "iter_frames", spy("iter_frames"))
    for paste in ({"close_lips": False, "mode": "photo"}, None):
        with AvatarClient(f"ws://{server}/v1/stream") as c:
            c.start(png(), align="center", live=False, **({} if paste is None else {"paste": paste}))
            c.end()
            list(c.frames())
    wav = io.BytesIO()
    sf.write(wav, speech(0.2), 16000, format="WAV")
    files = {"portrait": ("p.png", png()), "audio": ("a.wav", wav.getvalue())}
    r = httpx.post(f"http://{server}/v1/generate", files=files, data={"align": "center", "paste": '{"close_lips": false}'},
                   timeout=120)
    assert r.status_code == 200
    r = httpx.post(f"http://{server}/v1/generate", files=files, data={"align": "center"}, timeout=120)
    assert r.status_code == 200
    assert seen == [("session", PasteOptions(mode="photo", close_lips=False)), ("session", PasteOptions()),
                    ("iter_frames", PasteOptions(close_lips=False)), ("iter_frames", PasteOptions())]
    bad = httpx.post(f"http://{server}/v1/generate", files=files, data={"paste": '{"blinks": "5", "bogus": 1}'}, timeout=60)
    assert bad.status_code == 400 and "bogus" in bad.json()["error"] and "blinks" in bad.json()["error"]
    offer = httpx.post(f"http://{server}/v1/webrtc/offer", json={"sdp": "v=0", "type": "offer", "paste": {"mode": "cartoon"}},
                       timeout=30)
    assert offer.status_code == 400 and "mode" in offer.json()["error"]
    assert httpx.get(f"http://{server}/healthz", timeout=10).json()["sessions"] == 0
    with AvatarClient(f"ws://{server}/v1/stream") as c:
        with pytest.raises(RuntimeError, match="head_motion"):
            c.start(png(), align="center", paste={"head_motion": 99}, timeout=20)


def test_malformed_messages_get_errors_and_the_session_survives(server: str) -> None:
    with connect(f"ws://{server}/v1/stream", max_size=None) as ws:
        def reply() -> dict:
            while True:
                m = ws.recv(timeout=30)
                if isinstance(m, str):
                    return json.loads(m)

        ws.send(b"\x00\x01" * 100)
        assert "before start" in reply()["error"]
        for bad, match in [("{not json", "bad message"), (json.dumps({"type": "dance"}), "bad message"),
                           (json.dumps({"type": "state", "state": "sing"}), "bad message"),
                           (json.dumps({"type": "state", "state": "speak"}), "before start"),
                           (json.dumps({"type": "start", "portrait": "@@@"}), "base64"),
                           (json.dumps({"type": "start", "portrait": base64.b64encode(png()).decode(), "sample_rate": 7000}),
                            "sample_rate"),
                           (json.dumps({"type": "start", "portrait": base64.b64encode(png()[:60]).decode()}), "not a readable image"),
                           (json.dumps({"type": "start", "portrait": base64.b64encode(png()).decode(), "steps": "many"}), "steps"),
                           (json.dumps({"type": "start", "portrait": base64.b64encode(png()).decode(), "steps": "5"}), "steps"),
                           (json.dumps({"type": "start", "portrait": base64.b64encode(png()).decode(), "steps": True}), "steps"),
                           (json.dumps({"type": "start", "portrait": base64.b64encode(png()).decode(), "seed": 2**70}), "seed")]:
            ws.send(bad)
            m = reply()
            assert m["type"] == "error" and match in m["error"], (bad, m)
            assert not m["fatal"]
    # The server still serves a healthy session afterwards.
    with AvatarClient(f"ws://{server}/v1/stream") as c:
        c.start(png(), align="center", live=False)
        c.send({"type": "expression", "expression": {"yaw": 99}})  # outside the trained range
        c.push(speech(0.4))
        c.send({"type": "state", "state": "listen"})
        c.end()
        frames = list(c.frames())
        assert len(frames) == 10
        assert any(m["type"] == "error" and "yaw" in m["error"] for m in c.messages)


def test_huge_messages_close_only_their_own_connection(server: str) -> None:
    from websockets.exceptions import ConnectionClosed

    with AvatarClient(f"ws://{server}/v1/stream") as healthy:
        healthy.start(png(), align="center", live=False)
        with connect(f"ws://{server}/v1/stream", max_size=None) as ws:
            with pytest.raises(ConnectionClosed) as e:
                ws.send(b"\x00" * (2 << 20))  # over the 1 MB limit of this server
                ws.recv(timeout=30)
            assert e.value.rcvd is not None and e.value.rcvd.code == 1009, "closed as 'message too big'"
        healthy.push(speech(0.4))
        healthy.end()
        assert len(list(healthy.frames())) == 10, "the other session kept going"


def test_session_limit_and_odd_pcm_are_refused_clearly(server: str) -> None:
    clients = [AvatarClient(f"ws://{server}/v1/stream") for _ in range(2)]
    try:
        for c in clients:
            c.start(png(), align="center")
        with pytest.raises(RuntimeError, match="busy"):
            with AvatarClient(f"ws://{server}/v1/stream") as extra:
                extra.start(png(), align="center")
        clients[0].ws.send(b"\x00\x01\x02")  # an odd byte count is not int16
        time.sleep(1.0)
        assert any(m["type"] == "error" and "even byte count" in m["error"] for m in clients[0].messages)
        assert next(clients[1].frames(timeout=30)).index == 0
    finally:
        for c in clients:
            c.close()
    deadline = time.time() + 10
    while httpx.get(f"http://{server}/healthz").json()["sessions"] and time.time() < deadline:
        time.sleep(0.1)
    assert httpx.get(f"http://{server}/healthz").json()["sessions"] == 0, "closed connections free their sessions"


def test_fuzzed_messages_and_files_never_crash_or_leak_and_a_healthy_session_keeps_its_rate(server: str) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                               lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
                               max_leaves=10)
    messages = (st.text(max_size=200) | st.binary(max_size=2000)
                | st.builds(json.dumps, st.fixed_dictionaries({"type": st.sampled_from(["start", "state", "expression", "interrupt",
                                                                                        "flush", "end", "x"])}, optional={
                    "state": json_values, "expression": json_values, "portrait": json_values, "sample_rate": json_values})))
    uploads = st.tuples(st.binary(max_size=3000) | st.just(png()) | st.just(png()[:100]), st.binary(max_size=3000))
    # A healthy live session runs the whole time; its frames must keep coming at ~25 fps.
    healthy = AvatarClient(f"ws://{server}/v1/stream")
    healthy.start(png(), align="center", live=True)
    times: list[float] = []

    def watch() -> None:
        for _ in healthy.frames(timeout=20):
            times.append(time.perf_counter())

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        with connect(f"ws://{server}/v1/stream", max_size=None) as ws:
            @settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck), database=None)
            @given(messages)
            def one(msg: str | bytes) -> None:
                ws.send(msg)

            t_fuzz = time.perf_counter()
            one()
            ws.send(json.dumps({"type": "flush"}))

        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(uploads)
        def upload(files: tuple[bytes, bytes]) -> None:
            r = httpx.post(f"http://{server}/v1/generate", files={"portrait": ("p.png", files[0], "image/png"),
                                                                  "audio": ("a.wav", files[1], "audio/wav")}, timeout=60)
            assert r.status_code == 400 and r.json()["error"], r.text[:200]

        upload()
        t_end = time.perf_counter()
        during = [t for t in times if t_fuzz + 1.0 <= t <= t_end]
        assert len(during) / max(t_end - t_fuzz - 1.0, 1e-9) > 20, "the healthy session kept its frame rate"
    finally:
        healthy.close()
    assert httpx.get(f"http://{server}/healthz").json()["status"] == "ok"
    deadline = time.time() + 10
    while httpx.get(f"http://{server}/healthz").json()["sessions"] and time.time() < deadline:
        time.sleep(0.1)
    assert httpx.get(f"http://{server}/healthz").json()["sessions"] == 0, "no leaked session"


def test_sessions_log_structured_lines(server: str, caplog: pytest.LogCaptureFixture) -> None:
    from rtavatar.server.app import JsonLogFormatter

    with caplog.at_level("INFO", logger="rtavatar.server"):
        with AvatarClient(f"ws://{server}/v1/stream") as c:
            c.start(png(), align="center", live=False)
            c.push(speech(0.2))
            c.end()
            list(c.frames())
        time.sleep(0.5)
    events = [(r.session, r.event, r.transport) for r in caplog.records if hasattr(r, "event")]
    sid = events[0][0]
    assert (sid, "started", "websocket") in events and (sid, "closed", "websocket") in events
    line = json.loads(JsonLogFormatter().format(next(r for r in caplog.records if getattr(r, "event", "") == "closed")))
    assert line["session"] == sid and line["event"] == "closed" and line["frames"] == 5


def _session_threads() -> list[str]:
    return sorted(t.name for t in threading.enumerate() if t.name.startswith("session-"))


def _wait_idle(server: str, before: list[str], seconds: float = 15.0) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if httpx.get(f"http://{server}/healthz", timeout=10).json()["sessions"] == 0 and _session_threads() == before:
            return
        time.sleep(0.2)
    raise AssertionError(f"sessions left: {httpx.get(f'http://{server}/healthz').json()}, threads {_session_threads()}")


def test_malformed_or_unconnected_webrtc_offers_leave_no_session(server: str) -> None:
    """A malformed offer (garbage SDP, a video-only offer) is refused and leaves no session or
    stage thread behind (issue 31); an answered offer whose peer never connects is released
    after the connect timeout (3 s here)."""
    import asyncio

    pytest.importorskip("aiortc")
    from aiortc import RTCPeerConnection

    before = _session_threads()
    for body in ({"sdp": "garbage", "type": "offer", "portrait": base64.b64encode(png()).decode(), "align": "center"},) * 3:
        r = httpx.post(f"http://{server}/v1/webrtc/offer", json=body, timeout=60)
        assert r.status_code == 400 and "offer" in r.json()["error"]
    _wait_idle(server, before)

    async def offer(video_only: bool) -> str:
        pc = RTCPeerConnection()
        pc.addTransceiver("video", direction="recvonly")
        if not video_only:
            pc.addTransceiver("audio", direction="sendrecv")
            pc.createDataChannel("control")
        await pc.setLocalDescription(await pc.createOffer())
        sdp = pc.localDescription.sdp
        await pc.close()  # this client never completes the connection
        return sdp

    for video_only in (True, False):
        sdp = asyncio.run(offer(video_only))
        r = httpx.post(f"http://{server}/v1/webrtc/offer", timeout=60,
                       json={"sdp": sdp, "type": "offer", "portrait": base64.b64encode(png()).decode(), "align": "center"})
        assert r.status_code in (200, 400), r.text
        _wait_idle(server, before, seconds=20)


def test_an_image_bomb_is_refused_from_its_header(server: str) -> None:
    """A small PNG declaring 9000x9000 pixels is refused before it is decoded, on the WebSocket
    start and on /v1/generate, naming the size (not a server path)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    bomb = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 9000, 9000, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b""))
    with connect(f"ws://{server}/v1/stream", max_size=None) as ws:
        t = time.perf_counter()
        ws.send(json.dumps({"type": "start", "portrait": base64.b64encode(bomb).decode(), "align": "center"}))
        reply = json.loads(ws.recv(timeout=10))
        assert reply["type"] == "error" and "9000x9000" in reply["error"], reply
        assert time.perf_counter() - t < 2  # refused from the header: nothing decoded
    r = httpx.post(f"http://{server}/v1/generate", files={"portrait": ("p.png", bomb), "audio": ("a.wav", b"RIFF")}, timeout=60)
    assert r.status_code == 400 and "9000x9000" in r.json()["error"] and "/tmp" not in r.json()["error"]


def test_audio_flood_is_refused_and_the_session_goes_on(server: str) -> None:
    """A client may push audio at most max_audio_ahead (10 s here) ahead of the frames sent:
    a 15 s push is refused with a clear, non-fatal error and nothing of it is kept; pushing at
    the pace it plays still works."""
    with AvatarClient(f"ws://{server}/v1/stream") as c:
        c.start(png(), align="center", live=False)
        c.push(np.zeros(15 * 16000, np.float32))
        c.push(speech(0.4))
        c.end()
        frames = list(c.frames())
        errors = [m["error"] for m in c.messages if m["type"] == "error"]
    assert any("ahead" in e for e in errors), errors
    assert len(frames) == int(np.ceil(0.4 * 16000 / 640)), len(frames)  # the refused push left no frames


def test_foreign_origins_are_refused_and_local_pages_pass(server: str) -> None:
    """Any web page could otherwise drive a local server: a WebSocket handshake or a multipart
    POST from a foreign origin is refused (issue 31); the server's own page, loopback pages
    and programs without an Origin pass."""
    from websockets.exceptions import InvalidStatus

    with pytest.raises(InvalidStatus):
        with connect(f"ws://{server}/v1/stream", origin="http://evil.example"):
            pass
    r = httpx.post(f"http://{server}/v1/generate", headers={"Origin": "http://evil.example"},
                   files={"portrait": ("p.png", png()), "audio": ("a.wav", b"RIFF")}, timeout=30)
    assert r.status_code == 403 and "origin" in r.json()["error"]
    r = httpx.post(f"http://{server}/v1/webrtc/offer", headers={"Origin": "https://evil.example"},
                   json={"sdp": "v=0", "type": "offer"}, timeout=30)
    assert r.status_code == 403
    for origin in (f"http://{server}", "http://localhost:3000"):
        with connect(f"ws://{server}/v1/stream", origin=origin) as ws:
            ws.send(json.dumps({"type": "flush"}))
            assert json.loads(ws.recv(timeout=10))["type"] == "error"  # served: an ordinary protocol error
    assert httpx.get(f"http://{server}/healthz", headers={"Origin": "http://evil.example"}).status_code == 200  # reads pass


@pytest.fixture(scope="module")
def token_server(server: str) -> Iterator[str]:
    """A second server on the same model that requires a token, and whose measured capacity
    (0.625 of the machine per session of any kind) admits one session."""
    cfg = ServerConfig(max_sessions=4, max_message_bytes=1 << 20, idle_timeout=20, model="random test weights", token="s3cret",
                       capacity={k: 0.625 for k in ("crop", "warp", "photo", "face")})
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(create_app(SERVED["avatar"], cfg), host="127.0.0.1", port=port, log_level="warning"))
    t = threading.Thread(target=srv.run, daemon=True)
    t.start()
    deadline = time.time() + 30
    while not srv.started and time.time() < deadline:
        time.sleep(0.05)
    yield f"127.0.0.1:{port}"
    srv.should_exit = True
    t.join(timeout=10)


def test_a_token_is_required_when_set(token_server: str) -> None:
    """With --token, /v1/ routes need it (header, or ?token= for a browser's WebSocket); the
    page, /healthz and a wrong token's refusal say so clearly."""
    from websockets.exceptions import InvalidStatus

    base = f"http://{token_server}"
    assert httpx.get(f"{base}/healthz").status_code == 200 and httpx.get(f"{base}/").status_code == 200
    r = httpx.post(f"{base}/v1/generate", files={"portrait": ("p.png", png()), "audio": ("a.wav", b"RIFF")}, timeout=30)
    assert r.status_code == 401 and "token" in r.json()["error"]
    r = httpx.post(f"{base}/v1/generate", headers={"Authorization": "Bearer wrong"},
                   files={"portrait": ("p.png", png()), "audio": ("a.wav", b"RIFF")}, timeout=30)
    assert r.status_code == 401
    with pytest.raises(InvalidStatus):
        with connect(f"ws://{token_server}/v1/stream"):
            pass
    with AvatarClient(f"ws://{token_server}/v1/stream", token="s3cret") as c:
        c.start(png(), align="center", live=False)
        c.push(speech(0.2))
        c.end()
        assert len(list(c.frames())) == 5
    with connect(f"ws://{token_server}/v1/stream?token=s3cret") as ws:
        ws.send(json.dumps({"type": "flush"}))
        assert json.loads(ws.recv(timeout=10))["type"] == "error"


def test_serve_refuses_a_public_address_without_a_token(monkeypatch: pytest.MonkeyPatch) -> None:
    from rtavatar.errors import RTAvatarError
    from rtavatar.server.app import serve

    monkeypatch.delenv("RTAVATAR_TOKEN", raising=False)
    with pytest.raises(RTAvatarError, match="--token"):
        serve(host="0.0.0.0", port=free_port())


def test_an_abandoned_generate_is_cancelled_and_jobs_are_bounded(server: str) -> None:
    """POST /v1/generate runs as a bounded job: a second one while the first runs is refused
    with 503 and a retry hint; a client that gives up cancels its job (the slot frees and its
    temp directory goes) well before the 30 s of audio would have been generated."""
    import glob
    import soundfile as sf

    wav = io.BytesIO()
    sf.write(wav, np.tile(speech(1.0), 30), 16000, format="WAV")
    files = {"portrait": ("p.png", png()), "audio": ("a.wav", wav.getvalue())}
    before = set(glob.glob("/tmp/rtavatar-gen-*"))
    gone: list = []

    def give_up() -> None:
        try:
            httpx.post(f"http://{server}/v1/generate", files=files, data={"align": "center"}, timeout=2.0)
        except httpx.TimeoutException as e:
            gone.append(e)

    t = threading.Thread(target=give_up)
    t.start()
    deadline = time.time() + 20
    while httpx.get(f"http://{server}/healthz").json()["generate_jobs"] == 0 and time.time() < deadline:
        time.sleep(0.05)
    busy = httpx.post(f"http://{server}/v1/generate", files=files, data={"align": "center"}, timeout=30)
    assert busy.status_code == 503 and busy.headers.get("retry-after") and "busy" in busy.json()["error"]
    t.join()
    assert gone, "the first client should have given up"
    deadline = time.time() + 15
    while httpx.get(f"http://{server}/healthz").json()["generate_jobs"] and time.time() < deadline:
        time.sleep(0.1)
    assert httpx.get(f"http://{server}/healthz").json()["generate_jobs"] == 0, "the abandoned job still runs"
    assert set(glob.glob("/tmp/rtavatar-gen-*")) <= before, "its temp directory was left behind"


def test_admission_by_capacity_refuses_clearly_and_frees_the_slot(token_server: str) -> None:
    """A session that would push the admitted ones below real time is refused with "busy" and a
    retry hint (not admitted to lag), below --max-sessions; /healthz reports capacity and load;
    when the first session ends, the next is admitted."""
    h = httpx.get(f"http://{token_server}/healthz").json()
    assert h["capacity"]["warp"] == 1 and h["load"] == 0
    first = AvatarClient(f"ws://{token_server}/v1/stream", token="s3cret")
    first.start(png(), align="center", live=True)
    assert httpx.get(f"http://{token_server}/healthz").json()["load"] == pytest.approx(0.625)
    with AvatarClient(f"ws://{token_server}/v1/stream", token="s3cret") as second:
        with pytest.raises(RuntimeError, match="busy.*retry"):
            second.start(png(), align="center", timeout=20)
        assert second.messages[-1].get("retry_after") == 5
    r = httpx.post(f"http://{token_server}/v1/webrtc/offer", headers={"Authorization": "Bearer s3cret"},
                   json={"sdp": "v=0", "type": "offer", "portrait": base64.b64encode(png()).decode(), "align": "center"}, timeout=30)
    assert r.status_code == 503 and r.headers.get("retry-after") and "busy" in r.json()["error"]
    first.end()
    list(first.frames(timeout=30))
    first.close()
    deadline = time.time() + 10
    while httpx.get(f"http://{token_server}/healthz").json()["sessions"] and time.time() < deadline:
        time.sleep(0.1)
    with AvatarClient(f"ws://{token_server}/v1/stream", token="s3cret") as again:
        again.start(png(), align="center", live=False)
        again.end()
        list(again.frames())


def test_a_client_closing_its_socket_is_not_an_error(server: str, caplog: pytest.LogCaptureFixture) -> None:
    """A client that closes while frames stream ends its session; the server logs it at INFO,
    not as an ERROR with a traceback."""
    caplog.set_level(logging.INFO)
    for _ in range(2):
        c = AvatarClient(f"ws://{server}/v1/stream")
        c.start(png(), align="center", live=True)
        c.push(speech(0.5))
        time.sleep(0.3)
        c.close()
    deadline = time.time() + 10
    while httpx.get(f"http://{server}/healthz").json()["sessions"] and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [r.getMessage()[:200] for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("closed" in r.getMessage() for r in caplog.records if r.levelno == logging.INFO)


def test_an_hour_long_upload_is_refused_from_its_header(server: str, tmp_path: Path) -> None:
    """/v1/generate takes at most 600 s of audio a request: a 1-hour WAV is refused from its
    declared length before it is decoded (the message says it lasts 1.0 h), naming no server path."""
    import soundfile as sf

    wav = tmp_path / "hour.wav"
    sf.write(wav, np.zeros(3600 * 8000, np.int16), 8000, subtype="PCM_U8")  # 28.8 MB
    r = httpx.post(f"http://{server}/v1/generate", files={"portrait": ("p.png", png()), "audio": ("a.wav", wav.read_bytes())},
                   data={"align": "center"}, timeout=60)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert "lasts 1.0 h" in err and "600 s" in err and "/tmp" not in err, err
