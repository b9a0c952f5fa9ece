"""Regenerate the bundled sample speech (src/rtavatar/assets/speech/hello.wav) with espeak-ng.

Half a second of silence, a sentence, a pause, a second sentence, silence: so a demo or
`eval --photos` run shows the mouth both moving and resting.
"""

import numpy as np
import soundfile as sf

from rtavatar import SAMPLE_RATE
from rtavatar.tts import Voice, synthesize

SENTENCES = ("Hello! I am a talking portrait, animated by a one step diffusion model.",
             "Give me any photo and a voice, and I will speak in real time.")


def main(out: str = "src/rtavatar/assets/speech/hello.wav") -> None:
    voice = Voice("en-us", rate=160, pitch=45, range=60)
    gap = np.zeros(int(0.7 * SAMPLE_RATE), np.float32)
    parts = [np.zeros(int(0.5 * SAMPLE_RATE), np.float32)]
    for s in SENTENCES:
        parts += [synthesize(s, voice).audio, gap]
    audio = np.concatenate(parts)
    sf.write(out, audio / max(1.0, float(np.abs(audio).max()) / 0.9), SAMPLE_RATE, subtype="PCM_16")
    print(f"{out}: {len(audio) / SAMPLE_RATE:.2f} s")


if __name__ == "__main__":
    main()
