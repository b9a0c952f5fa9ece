"""Files shipped inside the package: the sample portrait (CC0), the sample speech (espeak-ng) and
the shut-eye relief blinks are painted with (from GRID, CC BY 4.0: eyes/README.md)."""

from pathlib import Path

ASSETS_DIR = Path(__file__).parent
SAMPLE_PORTRAIT = ASSETS_DIR / "portraits" / "lisa.jpg"
SAMPLE_SPEECH = ASSETS_DIR / "speech" / "hello.wav"
