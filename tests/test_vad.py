"""The `auto` state with silero-vad on the avatar's own audio: speech makes the face speak,
noise as loud as speech does not (where the energy rule is fooled)."""

from __future__ import annotations

from importlib.resources import files

import numpy as np
import pytest

from rtavatar import SAMPLE_RATE, SAMPLES_PER_FRAME
from rtavatar.errors import RTAvatarError
from rtavatar.media import read_audio
from rtavatar.models.conditioning import STATE_ID, StateTracker

pytest.importorskip("silero_vad")
from rtavatar.engine.vad import SileroVoice, voice_detector  # noqa: E402

SPEECH = str(files("rtavatar") / "assets" / "speech" / "hello.wav")


def speech_then_noise() -> tuple[np.ndarray, int]:
    """3 s of the bundled espeak-ng speech, then 3 s of white noise at the speech's RMS."""
    s = read_audio(SPEECH)[int(0.4 * SAMPLE_RATE) : int(3.4 * SAMPLE_RATE)].astype(np.float32)
    rms = float(np.sqrt(np.mean(s ** 2)))
    noise = np.random.default_rng(0).normal(0, rms, len(s)).astype(np.float32)
    return np.concatenate([s, noise]), len(s) // SAMPLES_PER_FRAME


def states(tracker: StateTracker, audio: np.ndarray) -> np.ndarray:
    return np.array([tracker.update(audio[i : i + SAMPLES_PER_FRAME]) for i in range(0, len(audio) - SAMPLES_PER_FRAME + 1, SAMPLES_PER_FRAME)])


def test_silero_tells_speech_from_noise_where_energy_cannot() -> None:
    audio, split = speech_then_noise()
    speak = STATE_ID["speak"]
    silero = states(StateTracker(voiced=SileroVoice()), audio) == speak
    energy = states(StateTracker(), audio) == speak
    assert silero[:split].mean() > 0.6, "speech is speech"
    assert silero[split + 15 :].mean() < 0.1, "noise is not (after the hold)"
    assert energy[split + 15 :].mean() > 0.9, "the energy rule takes the noise for speech"
    with pytest.raises(RTAvatarError, match="unknown voice detector"):
        voice_detector("webrtc")


def test_session_auto_state_listens_with_silero() -> None:
    from rtavatar.engine import Avatar

    audio, split = speech_then_noise()
    avatar = Avatar.random("tiny", seed=0)
    s = avatar.session(np.full((64, 64, 3), 128, np.uint8), align="center", voice="silero")
    s.push_audio(audio)
    s.close()
    got = [f.state for f in s.frames(timeout=120)]
    assert len(got) == len(audio) // SAMPLES_PER_FRAME
    assert np.mean([g == "speak" for g in got[:split]]) > 0.6
    assert np.mean([g == "speak" for g in got[split + 15 :]]) < 0.1


def test_tracker_reset_reaches_silero() -> None:
    """An interrupt resets the tracker: silero must forget the speech it heard past the cut,
    or the first frames after a barge-in still read as speech."""
    audio, split = speech_then_noise()
    voice = SileroVoice()
    tracker = StateTracker(voiced=voice)
    states(tracker, audio[: split * SAMPLES_PER_FRAME // 2 + 300])  # mid-speech, a partial window left
    assert voice.last and len(voice.stream.buf) > 0
    tracker.reset(quiet="listen")
    assert not voice.last and len(voice.stream.buf) == 0
    assert tracker.update(np.zeros(SAMPLES_PER_FRAME, np.float32)) == STATE_ID["listen"]
    # Reset means the same verdicts as a new detector on the same audio.
    voice.reset()
    fresh = SileroVoice()
    tail = audio[: 40 * SAMPLES_PER_FRAME]
    assert [voice(tail[i : i + SAMPLES_PER_FRAME]) for i in range(0, len(tail), SAMPLES_PER_FRAME)] == \
        [fresh(tail[i : i + SAMPLES_PER_FRAME]) for i in range(0, len(tail), SAMPLES_PER_FRAME)]
