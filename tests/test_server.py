"""The server with real parts: uvicorn on a loopback port, a real WebSocket client, real files."""

from __future__ import annotations

import base64
import io
import json
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


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    import torch

    avatar = Avatar(random_bundle(small_net(), vae_channels=8, seed=1, max_new=6))
    with torch.no_grad():  # random weights barely move off the reference; louder, so frames visibly change over time
        avatar.bundle.net.dit.out.weight.mul_(40)
    cfg = ServerConfig(max_sessions=2, max_message_bytes=1 << 20, idle_timeout=20, model="random test weights")
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
    assert frames[0].image().shape == (64, 64, 3)
    kinds = [m["type"] for m in c.messages]
    assert kinds[0] == "ready" and "first_frame" in kinds and kinds[-1] == "end"


def test_batch_endpoint_returns_a_playable_mp4(server: str, tmp_path: Path) -> None:
    import soundfile as sf

    from rtavatar.media import read_video

    wav = io.BytesIO()
    sf.write(wav, speech(1.0), 16000, format="WAV")
    r = httpx.post(f"http://{server}/v1/generate", files={"portrait": ("p.png", png((80, 60)), "image/png"),
                                                          "audio": ("a.wav", wav.getvalue(), "audio/wav")},
                   data={"align": "center", "expression": "smile=0.5"}, timeout=120)
    assert r.status_code == 200 and r.headers["content-type"] == "video/mp4"
    (tmp_path / "out.mp4").write_bytes(r.content)
    v = read_video(tmp_path / "out.mp4")
    assert v.frames.shape == (25, 60, 80, 3), "pasted back at the upload's own size"
    assert v.audio is not None and abs(len(v.audio) - 16000) < 1100
    bad = httpx.post(f"http://{server}/v1/generate", files={"portrait": ("p.png", b"not an image", "image/png"),
                                                            "audio": ("a.wav", wav.getvalue(), "audio/wav")}, timeout=60)
    assert bad.status_code == 400 and "error" in bad.json()
    truncated = httpx.post(f"http://{server}/v1/generate", files={"portrait": ("p.png", png()[:80], "image/png"),
                                                                  "audio": ("a.wav", wav.getvalue()[:30], "audio/wav")}, timeout=60)
    assert truncated.status_code == 400 and truncated.json()["error"]


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
                           (json.dumps({"type": "start", "portrait": base64.b64encode(png()).decode(), "steps": "many"}), "steps")]:
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


def test_fuzzed_messages_never_crash_or_leak(server: str) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                               lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
                               max_leaves=10)
    messages = (st.text(max_size=200) | st.binary(max_size=2000)
                | st.builds(json.dumps, st.fixed_dictionaries({"type": st.sampled_from(["start", "state", "expression", "interrupt",
                                                                                        "flush", "end", "x"])}, optional={
                    "state": json_values, "expression": json_values, "portrait": json_values, "sample_rate": json_values})))
    with connect(f"ws://{server}/v1/stream", max_size=None) as ws:
        @settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(messages)
        def one(msg: str | bytes) -> None:
            ws.send(msg)

        one()
        ws.send(json.dumps({"type": "flush"}))
        time.sleep(0.5)
    assert httpx.get(f"http://{server}/healthz").json()["status"] == "ok"
    with AvatarClient(f"ws://{server}/v1/stream") as c:  # a healthy session afterwards
        c.start(png(), align="center", live=False)
        c.push(speech(0.4))
        c.end()
        assert len(list(c.frames())) == 10
    deadline = time.time() + 10
    while httpx.get(f"http://{server}/healthz").json()["sessions"] and time.time() < deadline:
        time.sleep(0.1)
    assert httpx.get(f"http://{server}/healthz").json()["sessions"] == 0, "no leaked session"


def test_page_plays_the_avatar_over_webrtc_and_listens_to_the_microphone(server: str, tmp_path: Path) -> None:
    """Headless Chromium with a fake microphone playing speech: the page starts a session, the
    video plays and changes, the state switches to listen while the microphone speaks, and a
    forced state shows."""
    pytest.importorskip("aiortc")
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path("/usr/bin/chromium").exists():
        pytest.skip("Debian's chromium is not installed (scripts/setup.sh installs it)")
    import soundfile as sf

    from rtavatar.bench import bench_speech

    # Real (espeak-ng) speech for the microphone: silero-vad must hear a voice.
    sf.write(tmp_path / "mic.wav", np.concatenate([np.zeros(8000, np.float32), bench_speech(6.0)]), 16000, subtype="PCM_16")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={tmp_path / 'mic.wav'}", "--autoplay-policy=no-user-gesture-required",
            "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 760})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"http://{server}/")
            page.wait_for_function("document.querySelectorAll('#bundled option').length > 0", timeout=20000)
            page.uncheck("#paste")  # the generated face itself: every pixel comes from the network
            page.click("#start")
            page.wait_for_function("document.getElementById('avatar').currentTime > 1.0", timeout=60000)
            assert page.evaluate("document.getElementById('avatar').videoWidth") == 64, "the aligned face of the bundled photo"
            grab = "(() => { const v = document.getElementById('avatar'); const c = document.createElement('canvas');" \
                   " c.width = v.videoWidth; c.height = v.videoHeight; const g = c.getContext('2d'); g.drawImage(v, 0, 0);" \
                   " return Array.from(g.getImageData(0, 0, c.width, c.height).data); })()"
            a = np.array(page.evaluate(grab))
            page.wait_for_timeout(1500)
            b = np.array(page.evaluate(grab))
            assert a.max() > 0 and np.abs(a - b).mean() > 0.5, "the video shows frames, and they change"
            page.wait_for_function("document.getElementById('state').textContent === 'listen'", timeout=30000)
            page.click("#state-buttons button[data-state='idle']")
            page.wait_for_function("document.getElementById('state').textContent === 'idle'", timeout=20000)
            page.wait_for_function("document.getElementById('stats').textContent.includes('first frame')", timeout=20000)
            page.screenshot(path=str(tmp_path / "page.png"))
            assert not errors, errors
        finally:
            browser.close()


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
