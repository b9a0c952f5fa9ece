"""rtavatar: real-time audio-driven talking-portrait video (OSA-LCM + LLIA)."""

__version__ = "0.1.0"

# Data conventions shared by every stage (DESIGN.md §2).
FPS = 25
SAMPLE_RATE = 16_000
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS  # 640


def __getattr__(name: str):  # noqa: ANN202 - lazy, so `import rtavatar` stays light
    if name in ("Avatar", "Session"):
        from rtavatar import engine

        return getattr(engine, name)
    raise AttributeError(f"module 'rtavatar' has no attribute {name!r}")
