"""Text to speech with espeak-ng, with phoneme timings from its event API.

We call libespeak-ng through ctypes rather than the `espeak-ng` command because only the
C API reports *when* each phoneme starts (event type 7, `audio_position` in ms), and those
timings are the ground truth the synthetic generator aligns visemes to (data/speech.py adds
its random voices and sentences). A bottom-layer module: the server's page speaks with it,
the benchmark and the demo too.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import logging
import os
import struct
import threading
from dataclasses import dataclass, field

import numpy as np
from scipy.signal import resample_poly

from rtavatar import SAMPLE_RATE
from rtavatar.errors import SpeechSynthesisError

log = logging.getLogger(__name__)

_EV_LIST_TERMINATED, _EV_WORD, _EV_END, _EV_PHONEME = 0, 1, 5, 7
_OUTPUT_SYNCHRONOUS = 2
_INIT_PHONEME_EVENTS, _INIT_PHONEME_IPA, _INIT_DONT_EXIT = 0x0001, 0x0002, 0x8000
_PARAM_RATE, _PARAM_VOLUME, _PARAM_PITCH, _PARAM_RANGE = 1, 2, 3, 4
_POS_CHARACTER, _CHARS_UTF8 = 1, 1


class _Event(ctypes.Structure):  # espeak_EVENT from speak_lib.h (64-bit layout)
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", ctypes.c_char * 8),  # union{int number; const char* name; char string[8]}
    ]


_Callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclass(frozen=True)
class Phoneme:
    """One phoneme: IPA name ("" for a pause) and its interval in seconds from utterance start."""

    ipa: str
    start: float
    end: float


@dataclass
class Utterance:
    """16 kHz mono float32 speech with its phoneme timeline."""

    text: str
    audio: np.ndarray
    phonemes: list[Phoneme] = field(default_factory=list)
    voice: str = ""

    @property
    def duration(self) -> float:
        return len(self.audio) / SAMPLE_RATE


@dataclass(frozen=True)
class Voice:
    """espeak-ng voice settings. rate: words/min (80-450); pitch, range: 0-100."""

    name: str = "en-us"
    rate: int = 165
    pitch: int = 50
    range: int = 50


class Espeak:
    """Process-wide espeak-ng engine (the C library keeps global state, so one per process)."""

    _instance: "Espeak | None" = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        path = ctypes.util.find_library("espeak-ng") or "libespeak-ng.so.1"
        try:
            self._lib = ctypes.CDLL(path)
        except OSError as e:
            raise SpeechSynthesisError(
                "espeak-ng's library (libespeak-ng1) is not installed; run scripts/setup.sh "
                "or `apt-get install espeak-ng`"
            ) from e
        self._lib.espeak_Synth.argtypes = [
            ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
            ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]
        self._lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        rate = self._lib.espeak_Initialize(
            _OUTPUT_SYNCHRONOUS, 0, None, _INIT_PHONEME_EVENTS | _INIT_PHONEME_IPA | _INIT_DONT_EXIT
        )
        if rate <= 0:
            raise SpeechSynthesisError(f"espeak_Initialize failed (returned {rate}); is espeak-ng-data installed?")
        self.native_rate = rate
        self._samples: list[np.ndarray] = []
        self._events: list[tuple[int, int, bytes]] = []
        self._cb = _Callback(self._on_synth)  # keep a reference: ctypes callbacks must outlive the C side
        self._lib.espeak_SetSynthCallback(self._cb)

    @classmethod
    def get(cls) -> "Espeak":
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def _on_synth(self, wav, n, events) -> int:  # noqa: ANN001 - ctypes signature
        if n > 0:
            self._samples.append(np.ctypeslib.as_array(wav, (n,)).copy())
        i = 0
        while events[i].type != _EV_LIST_TERMINATED:
            ev = events[i]
            name = ev.id if ev.type == _EV_PHONEME else b""
            self._events.append((ev.type, ev.audio_position, name))
            i += 1
        return 0

    def synthesize(self, text: str, voice: Voice = Voice()) -> Utterance:
        """Speak `text`; returns 16 kHz audio and phonemes (pauses have ipa "")."""
        if not text.strip():
            raise SpeechSynthesisError("cannot synthesize empty text")
        with self._lock:
            self._samples, self._events = [], []
            if self._lib.espeak_SetVoiceByName(voice.name.encode()) != 0:
                raise SpeechSynthesisError(f"espeak-ng has no voice {voice.name!r}")
            for param, value in ((_PARAM_RATE, voice.rate), (_PARAM_PITCH, voice.pitch), (_PARAM_RANGE, voice.range)):
                self._lib.espeak_SetParameter(param, int(value), 0)
            data = text.encode()
            err = self._lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
            self._lib.espeak_Synchronize()
            if err != 0:
                raise SpeechSynthesisError(f"espeak_Synth failed with code {err} for text {text[:40]!r}")
            samples, events = self._samples, self._events
        native = np.concatenate(samples).astype(np.float32) / 32768.0 if samples else np.zeros(0, np.float32)
        # 22050 -> 16000 Hz: polyphase resampling (16000/22050 = 320/441).
        audio = resample_poly(native, SAMPLE_RATE // 50, self.native_rate // 50).astype(np.float32)
        peak = float(np.abs(audio).max()) if len(audio) else 0.0
        if peak > 0.95:  # espeak-ng can hit full scale; resampling overshoots it slightly
            audio *= 0.95 / peak
        duration = len(audio) / SAMPLE_RATE
        marks = [(pos / 1000.0, name.decode("utf-8", "replace")) for typ, pos, name in events if typ == _EV_PHONEME]
        marks.sort(key=lambda m: m[0])
        phonemes = []
        for k, (start, name) in enumerate(marks):
            end = marks[k + 1][0] if k + 1 < len(marks) else duration
            end = min(end, duration)
            if end > start:
                phonemes.append(Phoneme(ipa=name.strip(), start=start, end=end))
        return Utterance(text=text, audio=audio, phonemes=phonemes, voice=voice.name)


def _read_exact(fd: int, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            raise SpeechSynthesisError("espeak-ng child process ended early")
        buf += chunk
    return bytes(buf)


def synthesize(text: str, voice: Voice = Voice()) -> Utterance:
    """Speak `text` deterministically.

    espeak-ng's output depends on everything the process synthesized before (its timings drift
    by a few ms from call to call), which would make datasets depend on worker scheduling. So
    each call runs in a forked child whose engine was initialised but has never spoken; the
    result comes back over a pipe as JSON + raw float32 samples.
    """
    engine = Espeak.get()  # initialise (without speaking) in the parent, so children inherit it
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(r)
        code = 0
        try:
            utt = engine.synthesize(text, voice)
            head = json.dumps({"ok": True, "n": len(utt.audio), "voice": utt.voice,
                               "phonemes": [[p.ipa, p.start, p.end] for p in utt.phonemes]}).encode()
            payload = utt.audio.astype(np.float32).tobytes()
        except BaseException as e:  # noqa: BLE001 - report any failure to the parent
            head, payload, code = json.dumps({"ok": False, "error": str(e)}).encode(), b"", 1
        with os.fdopen(w, "wb") as f:
            f.write(struct.pack("<Q", len(head)) + head + payload)
        os._exit(code)
    os.close(w)
    try:
        (n_head,) = struct.unpack("<Q", _read_exact(r, 8))
        head = json.loads(_read_exact(r, n_head))
        if not head["ok"]:
            raise SpeechSynthesisError(head["error"])
        audio = np.frombuffer(_read_exact(r, 4 * head["n"]), np.float32).copy()
    finally:
        os.close(r)
        os.waitpid(pid, 0)
    phonemes = [Phoneme(ipa, float(a), float(b)) for ipa, a, b in head["phonemes"]]
    return Utterance(text=text, audio=audio, phonemes=phonemes, voice=head["voice"])
