"""Files shipped inside the package: the sample portrait (CC0) and the sample speech (espeak-ng)."""

from pathlib import Path

ASSETS_DIR = Path(__file__).parent
SAMPLE_PORTRAIT = ASSETS_DIR / "portraits" / "lisa.jpg"
SAMPLE_SPEECH = ASSETS_DIR / "speech" / "hello.wav"
