"""rtavatar as a Pipecat video service, offline: a scripted "TTS" speaks two turns, the user
barges in on the second, and the frames the transport would show are written to an mp4.

    python examples/pipecat_face.py [--out pipecat_face.mp4] [--checkpoint RUN]

In a real bot, put `RTAvatarVideoService(portrait="me.jpg")` between your TTS service and
`transport.output()`; nothing else changes.
"""

import argparse
import asyncio

import numpy as np
from pipecat.frames.frames import (InterruptionFrame, OutputAudioRawFrame, OutputImageRawFrame, TTSAudioRawFrame,
                                   TTSStartedFrame, TTSStoppedFrame)
from pipecat.tests.utils import SleepFrame, run_test

from rtavatar import Avatar
from rtavatar.tts import Voice, synthesize
from rtavatar.integrations.core import resample_int16
from rtavatar.integrations.pipecat import RTAvatarVideoService
from rtavatar.media import VideoWriter


def tts(text: str, rate: int = 24000) -> list:
    """What a TTS service sends: 100 ms int16 chunks at its own rate."""
    pcm = resample_int16(np.round(synthesize(text, Voice("en-us", 160, 45, 60)).audio * 32767).astype(np.int16), 16000, rate)
    return [TTSAudioRawFrame(audio=pcm[i : i + rate // 10].tobytes(), sample_rate=rate, num_channels=1)
            for i in range(0, len(pcm), rate // 10)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", default="pipecat_face.mp4")
    p.add_argument("--checkpoint", default=None, help="default: the shipped model")
    p.add_argument("--random", action="store_true", help="random tiny weights (the plumbing only: the face is noise)")
    a = p.parse_args()
    avatar = Avatar.random() if a.random else Avatar.load(a.checkpoint) if a.checkpoint else Avatar.from_pretrained()
    face = RTAvatarVideoService(avatar=avatar)
    script = [SleepFrame(0.5), TTSStartedFrame(), *tts("Hello! I am your agent's face."), TTSStoppedFrame(), SleepFrame(4.0),
              TTSStartedFrame(), *tts("Let me tell you a very long story about the sea and the ships."), SleepFrame(1.5),
              InterruptionFrame(), SleepFrame(1.0)]
    down, _ = asyncio.run(run_test(face, frames_to_send=script, start_timeout=120))
    with VideoWriter(a.out, fps=25, sample_rate=24000) as w:
        for img, aud in zip(down, down[1:]):
            if isinstance(img, OutputImageRawFrame) and isinstance(aud, OutputAudioRawFrame):
                frame = np.frombuffer(img.image, np.uint8).reshape(img.size[1], img.size[0], 3)
                w.add((frame,), np.frombuffer(aud.audio, np.int16).astype(np.float32) / 32768.0)
    print(f"{a.out}: {w.frames} frames; first voiced frame {1000 * face.ttfb[0]:.0f} ms after the first TTS audio; "
          f"after the barge-in: last voiced frame {1000 * face.barge_in[0]:.0f} ms, first listening frame "
          f"{1000 * face.listen_after[0]:.0f} ms")


if __name__ == "__main__":
    main()
