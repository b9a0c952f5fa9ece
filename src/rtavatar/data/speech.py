"""Random voices and sentences for the synthetic data, spoken by espeak-ng (`rtavatar.tts`:
the synthesis itself, with phoneme timings)."""

from __future__ import annotations

import numpy as np

from rtavatar.tts import Voice


# Voices with varied timbre: espeak-ng English voices x its variants (male m1-m7, female f1-f5).
ACCENTS = ("en-us", "en", "en-gb-x-rp", "en-gb-scotland", "en-029")
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5")


def random_voice(rng: np.random.Generator) -> Voice:
    name = f"{rng.choice(ACCENTS)}+{rng.choice(VARIANTS)}"
    return Voice(name=name, rate=int(rng.integers(130, 211)), pitch=int(rng.integers(25, 76)), range=int(rng.integers(30, 91)))


_SUBJECTS = (
    "the old captain", "my neighbour", "a quiet student", "the city council", "our teacher", "the tired pilot",
    "every morning the baker", "a small group of friends", "the weather report", "this new phone", "my brother",
    "the museum guide", "a young doctor", "the football team", "her grandmother", "the lazy cat", "nobody here",
)
_VERBS = (
    "wants to visit", "forgot about", "always talks about", "painted", "carefully opened", "will never sell",
    "quickly found", "is looking for", "brought back", "loves to watch", "argued about", "could not believe",
    "wrote a letter about", "is waiting for", "laughed at", "cleaned", "remembered",
)
_OBJECTS = (
    "the blue boat on the river", "a map of the northern islands", "seven yellow umbrellas", "the broken window",
    "an enormous chocolate cake", "the quiet village by the sea", "a box of old photographs", "the morning train",
    "a strange noise in the kitchen", "the price of fresh bread", "our plans for the summer", "the missing keys",
    "a very loud orchestra", "the garden behind the school", "two hundred paper cranes", "the final exam",
)
_TAILS = ("", "", " yesterday", " last week", " again", " before lunch", " after the storm", " every single day")
_OPENERS = ("", "", "", "Well, ", "Honestly, ", "You know, ", "Oh, ", "Look, ", "Really? ")
_QUESTIONS = ("Do you think", "Why would", "Have you heard that", "Is it true that")


# Held-out sentences: the "test" split draws objects the "train" split never says.
_HELD_OUT_OBJECTS = 4


def random_sentence(rng: np.random.Generator, split: str = "train") -> str:
    """A random English sentence (statement or question) from a small grammar."""
    objects = _OBJECTS[-_HELD_OUT_OBJECTS:] if split == "test" else _OBJECTS[:-_HELD_OUT_OBJECTS]
    subj, verb, obj = rng.choice(_SUBJECTS), rng.choice(_VERBS), rng.choice(objects)
    tail = rng.choice(_TAILS)
    if rng.random() < 0.25:
        return f"{rng.choice(_QUESTIONS)} {subj} {verb} {obj}{tail}?"
    text = f"{rng.choice(_OPENERS)}{subj} {verb} {obj}{tail}."
    return text[0].upper() + text[1:]
