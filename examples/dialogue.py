"""Play a dialogue through a live Session, as a voice agent's TTS would, and write an mp4.

    python examples/dialogue.py [--checkpoint RUN] [--image me.jpg] [--out dialogue.mp4]

The avatar says its lines sentence by sentence (espeak-ng), pushed as they are "synthesised";
between its turns the user talks (silence on the avatar's track) and the session is told to
listen. Frames are written as they come, each with its own audio, so the mp4's audio and
video are in sync by construction.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading

import numpy as np

from rtavatar import SAMPLE_RATE
from rtavatar.commands.bench import plain_portrait
from rtavatar.tts import Voice, synthesize
from rtavatar.engine import Avatar
from rtavatar.media import VideoWriter
from rtavatar.photo.options import PasteOptions

TURNS = [
    ("avatar", "Hi! I am your avatar. Ask me anything."),
    ("user", 1.6),  # seconds the user speaks
    ("avatar", "Good question. Let me think about it for a second."),
    ("avatar", "The answer is: talking faces are easier than they look."),
    ("user", 1.2),
    ("avatar", "Thanks for listening. Goodbye!"),
]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=None, help="a teacher / distill / EFT run (default: random tiny weights)")
    p.add_argument("--image", default=None, help="portrait (default: a plain gradient, as a crop)")
    p.add_argument("--out", default="dialogue.mp4")
    a = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    avatar = Avatar.load(a.checkpoint) if a.checkpoint else Avatar.random("tiny")
    if a.image:
        session = avatar.session(a.image, paste=PasteOptions())
    else:
        session = avatar.session(plain_portrait(avatar.resolution), align="center")
    voice = Voice(name="en-us", rate=170)

    def agent() -> None:  # the dialogue manager + TTS, on its own thread like a real agent
        for who, what in TURNS:
            if who == "avatar":
                session.set_state("speak")
                for sentence in [s.strip() + "." for s in what.split(".") if s.strip()]:
                    session.push_audio(synthesize(sentence, voice).audio)
                session.flush()
            else:
                session.set_state("listen")
                session.push_audio(np.zeros(int(what * SAMPLE_RATE), np.float32))
                session.flush()
        session.close()

    t = threading.Thread(target=agent)
    t.start()
    states = []
    with VideoWriter(a.out) as w:
        for f in session.frames():
            w.add((f.image,), f.audio)
            states.append(f.state)
    t.join()
    changes = [states[0]] + [s for prev, s in zip(states, states[1:]) if s != prev]
    print(f"wrote {a.out}: {len(states)} frames ({len(states) / 25:.1f} s); states in order: {' -> '.join(changes)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
