"""The WebRTC path end to end (issue 31): the server's aiortc peer against an aiortc client, and
the page itself in headless Chromium with a fake microphone. Random small weights, uvicorn on
a loopback port, real SDP, ICE, DTLS, RTP and SCTP; every wait is a poll with a deadline."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import socket
import threading
import time
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("aiortc")

import av  # noqa: E402
import httpx  # noqa: E402
import uvicorn  # noqa: E402
from aiortc import RTCPeerConnection, RTCSessionDescription  # noqa: E402
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack  # noqa: E402
from PIL import Image  # noqa: E402

from rtavatar.checkpoints import random_bundle  # noqa: E402
from rtavatar.engine import Avatar  # noqa: E402
from rtavatar.server.app import ServerConfig, create_app  # noqa: E402
from test_engine import small_net  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """This module's own server (not test_server's): random small weights, loopback, silero-vad
    on the microphone and on the avatar's audio (the server's default)."""
    import torch

    avatar = Avatar(random_bundle(small_net(), vae_channels=8, seed=1, max_new=6))
    with torch.no_grad():  # random weights barely move off the reference; louder, so frames visibly change
        avatar.bundle.net.dit.out.weight.mul_(40)
    cfg = ServerConfig(max_sessions=2, idle_timeout=20, model="random test weights")
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(create_app(avatar, cfg), host="127.0.0.1", port=port, log_level="warning"))
    t = threading.Thread(target=srv.run, name="uvicorn-test-webrtc", daemon=True)
    t.start()
    deadline = time.monotonic() + 30
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.started, "uvicorn did not start within 30 s"
    yield f"127.0.0.1:{port}"
    srv.should_exit = True
    t.join(timeout=10)


def speech_audio(seconds: float) -> np.ndarray:
    """Real speech (espeak-ng), 16 kHz float32, cut to `seconds`: silero-vad hears a voice in
    it (it hears none in test_engine.speech's voiced bursts)."""
    from rtavatar.tts import Voice, synthesize

    try:
        one = synthesize("Hello! I am a real-time avatar. Every frame you see was generated from this voice.", Voice()).audio
    except Exception as e:  # noqa: BLE001 - any TTS failure means no speech to test with
        pytest.skip(f"espeak-ng speech unavailable ({e}); scripts/setup.sh installs espeak-ng")
    return np.tile(one, int(np.ceil(seconds * 16000 / len(one))))[: int(seconds * 16000)].astype(np.float32)


def wav_bytes(audio: np.ndarray) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, audio, 16000, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def png(size: tuple[int, int] = (64, 64), seed: int = 0) -> bytes:
    arr = np.random.default_rng(seed).integers(0, 255, (*size[::-1], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


def session_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("session-")}


def wait_released(server: str, before: set[threading.Thread], seconds: float = 10.0) -> None:
    """/healthz back to 0 sessions and no session thread alive that was not before, within `seconds`
    (threads compared as objects: another module's stragglers ending meanwhile do not count)."""
    deadline = time.monotonic() + seconds
    while True:
        h = httpx.get(f"http://{server}/healthz", timeout=10).json()
        new = session_threads() - before
        if h["sessions"] == 0 and not new:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not released {seconds:g} s after the client closed: /healthz {h}, "
                                 f"session threads left: {sorted(t.name for t in new)}")
        time.sleep(0.1)


async def until(what: str, ok: Callable[[], bool], seconds: float, info: Callable[[], Any] = lambda: "") -> float:
    """Poll `ok` every 20 ms until it holds (returns the seconds it took) or fail after `seconds`."""
    t0 = time.monotonic()
    while not ok():
        if time.monotonic() - t0 > seconds:
            raise AssertionError(f"{what}: not within {seconds:g} s. {info()}")
        await asyncio.sleep(0.02)
    return time.monotonic() - t0


class Silence(MediaStreamTrack):
    """The client's microphone: 20 ms of 48 kHz silence, paced in real time."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self.k, self.t0 = 0, None

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        self.t0 = self.t0 or time.monotonic()
        await asyncio.sleep(max(0.0, self.t0 + self.k * 0.02 - time.monotonic()))
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 960), np.int16), format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = 48000, self.k * 960, Fraction(1, 48000)
        self.k += 1
        return frame


def test_aiortc_client_gets_paced_video_and_audio_and_states_and_leaves_nothing(server: str) -> None:
    """An aiortc client offering what the page offers (a microphone track, recvonly video, a
    "control" data channel) gets the avatar at 25 fps at the pasted-back size (a 64 px picture
    enlarged to 256 px) with 48 kHz Opus audio, timestamps increasing; speech posted to
    /v1/webrtc/{sid}/audio is heard and the data channel reports "speak" and then a state
    after it; closing the client releases the session and its threads within 10 s."""
    before = session_threads()
    speech = speech_audio(2.0)

    async def main() -> None:
        pc = RTCPeerConnection()
        video: list[tuple[float, int, int, int]] = []  # (arrival, width, height, pts)
        pictures: list[np.ndarray] = []  # a few decoded frames
        audio: list[tuple[float, int, int, int, float]] = []  # (arrival, rate, samples, pts, peak)
        messages: list[tuple[float, dict]] = []
        readers: list[asyncio.Task] = []

        async def read(track: MediaStreamTrack) -> None:
            while True:
                try:
                    f = await track.recv()
                except MediaStreamError:
                    return
                if track.kind == "video":
                    video.append((time.monotonic(), f.width, f.height, f.pts))
                    if len(video) % 25 == 0:
                        pictures.append(f.to_ndarray(format="rgb24"))
                else:
                    audio.append((time.monotonic(), f.sample_rate, f.samples, f.pts, float(np.abs(f.to_ndarray()).max())))

        pc.on("track", lambda track: readers.append(asyncio.ensure_future(read(track))))
        pc.addTrack(Silence())  # as the page: the microphone, sendrecv
        pc.addTransceiver("video", direction="recvonly")
        channel = pc.createDataChannel("control")
        channel.on("open", lambda: channel.send(json.dumps({"type": "stats"})))
        channel.on("message", lambda m: messages.append((time.monotonic(), json.loads(m))))
        try:
            await pc.setLocalDescription(await pc.createOffer())  # aiortc gathers its candidates here
            async with httpx.AsyncClient(base_url=f"http://{server}", timeout=60) as http:
                r = await http.post("/v1/webrtc/offer", json={"sdp": pc.localDescription.sdp, "type": "offer",
                                                              "portrait": base64.b64encode(png()).decode(), "align": "center",
                                                              "paste": {"back": True}})
                assert r.status_code == 200, r.text
                ans = r.json()
                assert ans["type"] == "answer" and ans["resolution"] == 64
                await pc.setRemoteDescription(RTCSessionDescription(sdp=ans["sdp"], type=ans["type"]))
                t_answer = time.monotonic()
                assert (await http.get("/healthz")).json()["sessions"] == 1

                def seen() -> str:
                    return f"{len(video)} video / {len(audio)} audio frames, connection {pc.connectionState}, messages {messages[-5:]}"

                await until("the first video frame", lambda: len(video) > 0, 20, seen)
                took = await until("25 video frames after the first", lambda: len(video) >= 26, 6, seen)
                assert took < 3.0, f"25 frames took {took:.2f} s after the first (25 fps: 1 s)"
                await until("the data channel's first state", lambda: any(m["type"] == "state" for _, m in messages), 10, seen)

                n_speech = len(audio)
                r = await http.post(f"/v1/webrtc/{ans['session']}/audio", files={"audio": ("say.wav", wav_bytes(speech), "audio/wav")})
                assert r.status_code == 200 and abs(r.json()["seconds"] - 2.0) < 0.05, r.text
                t_push = time.monotonic()

            def states() -> list[str]:
                return [m["state"] for t, m in messages if m["type"] == "state" and t >= t_push]

            await until('state "speak" after the speech was posted', lambda: "speak" in states(), 10, lambda: f"states {states()}; {seen()}")
            await until('a state after "speak"', lambda: states()[states().index("speak") + 1:] != [], 15,
                        lambda: f"states {states()}; {seen()}")
            assert states()[states().index("speak") + 1] == "idle", f"the microphone is silent: idle after speaking, not {states()}"
            loud = max(peak for _, _, _, _, peak in audio[n_speech:])
            assert loud > 2000, f"the avatar's speech arrives as audio (peak {loud:.0f} of 32767)"
            assert not [m for _, m in messages if m["type"] == "error"], messages

            # What arrived: every video frame the pasted-back size, 25 fps, pts increasing; 48 kHz audio in step.
            assert {(w, h) for _, w, h, _ in video} == {(256, 256)}, "pasted back: the 64 px picture enlarged to 256 px"
            assert all(pic.shape == (256, 256, 3) and pic.std() > 20 for pic in pictures), "frames show the (noise) picture"
            pts = [p for *_, p in video]
            assert all(b > a for a, b in zip(pts, pts[1:])), "video pts increase"
            span = video[-1][0] - video[0][0]
            assert 20 <= (len(video) - 1) / span <= 30, f"{len(video)} video frames in {span:.1f} s"
            assert {rate for _, rate, *_ in audio} == {48000}
            apts = [p for _, _, _, p, _ in audio]
            assert all(b > a for a, b in zip(apts, apts[1:])), "audio pts increase"
            heard = sum(n for _, _, n, _, _ in audio) / 48000
            assert abs(heard - (time.monotonic() - t_answer)) < 3.0, f"{heard:.1f} s of audio in {time.monotonic() - t_answer:.1f} s"
        finally:
            await pc.close()
            for task in readers:
                task.cancel()

    asyncio.run(main())
    wait_released(server, before, seconds=10)


PAGE_STATE = """() => { const v = document.getElementById('avatar');
  return {state: document.getElementById('state').textContent, mic: document.getElementById('mic').textContent,
          error: document.getElementById('error').textContent, stats: document.getElementById('stats').textContent,
          currentTime: v.currentTime, videoWidth: v.videoWidth, videoHeight: v.videoHeight, paused: v.paused,
          readyState: v.readyState, start_disabled: document.getElementById('start').disabled}; }"""


def test_page_in_chromium_plays_the_avatar_and_listens_while_the_microphone_speaks(server: str, tmp_path: Path) -> None:
    """The served page in headless Chromium (Debian's, driven by Playwright) with a fake
    microphone playing a wav in a loop (1.5 s of silence, 3 s of speech, 3.5 s of silence):
    an offer refused with a body that is not JSON shows a readable error and Start works
    again; Start plays the bundled portrait pasted back (300x400) in the <video>, its time
    advancing; when the microphone speaks, silero-vad on the server switches the avatar to
    listen and the page shows it (the data channel's `user` and `state` messages), and back
    when it stops; Stop releases the session."""
    sync_api = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed (scripts/setup.sh installs Debian's chromium for this test)")
    mic = tmp_path / "mic.wav"
    mic.write_bytes(wav_bytes(np.concatenate([np.zeros(24000, np.float32), speech_audio(3.0), np.zeros(56000, np.float32)])))
    before = session_threads()
    t_test = time.monotonic()

    with sync_api.sync_playwright() as p:
        try:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, timeout=30000, args=[
                "--no-sandbox", "--disable-gpu", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-audio-capture={mic}", "--autoplay-policy=no-user-gesture-required",
                "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"])
        except sync_api.Error as e:
            pytest.fail(f"{CHROMIUM} did not start under Playwright: {e}")
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 760})
            problems: list[str] = []
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)

            def wait(what: str, condition: str, seconds: float, arg: Any = None) -> None:
                try:
                    page.wait_for_function(condition, arg=arg, timeout=seconds * 1000, polling=50)
                except sync_api.TimeoutError:
                    raise AssertionError(f"{what}: not within {seconds:g} s (test time {time.monotonic() - t_test:.1f} s). "
                                         f"page: {page.evaluate(PAGE_STATE)}; {problems}") from None

            for attempt in (1, 2):  # one retry of the page load, no more
                try:
                    page.goto(f"http://{server}/", timeout=15000)
                    page.wait_for_function("document.querySelectorAll('#bundled option').length > 0", timeout=15000)
                    break
                except sync_api.Error:
                    if attempt == 2:
                        raise
            assert page.input_value("#bundled") == "lisa" and page.is_checked("#paste"), "the page's defaults"
            # A refused offer whose body is not JSON (a proxy's error page) reads clearly and Start works again.
            page.route("**/v1/webrtc/offer", lambda route: route.fulfill(status=502, body="Bad Gateway", content_type="text/plain"))
            page.click("#start")
            wait("a readable error for a refused offer", "document.getElementById('error').textContent.includes('HTTP 502')"
                 " && !document.getElementById('start').disabled", 10)
            page.unroute("**/v1/webrtc/offer")
            problems.clear()  # the console's line about the 502
            page.click("#start")
            wait("the <video> playing the avatar", "document.getElementById('avatar').currentTime > 0.5", 20)
            shown = page.evaluate(PAGE_STATE)
            assert (shown["videoWidth"], shown["videoHeight"]) == (300, 400), f"lisa.jpg pasted back at its own size: {shown}"
            assert not shown["paused"] and not shown["error"], shown
            wait("the video's time advancing", "t => document.getElementById('avatar').currentTime > t + 1.0", 5, shown["currentTime"])

            wait("the microphone heard speaking", "document.getElementById('mic').textContent === 'speaking'", 15)
            wait('the state "listen" while the microphone speaks', "document.getElementById('state').textContent === 'listen'", 5)
            wait("the microphone heard quiet again", "document.getElementById('mic').textContent === 'quiet'", 15)
            wait("the state leaving listen after the microphone stopped", "document.getElementById('state').textContent !== 'listen'", 5)
            wait("the stats line", "document.getElementById('stats').textContent.includes('first frame')", 5)
            assert not page.evaluate(PAGE_STATE)["error"] and not problems, (page.evaluate(PAGE_STATE), problems)

            page.click("#stop")
            wait("Stop", "document.getElementById('state').textContent === 'not started'", 5)
        finally:
            browser.close()
    wait_released(server, before, seconds=10)
    assert time.monotonic() - t_test < 60, f"the page test took {time.monotonic() - t_test:.0f} s"
