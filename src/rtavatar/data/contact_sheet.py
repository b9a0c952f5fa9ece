"""Contact sheet of the synthetic data: identities (columns) x visemes/states (rows).

    python -m rtavatar.data.contact_sheet --out docs/contact_sheet.png
"""

from __future__ import annotations

import argparse

import numpy as np
from PIL import Image, ImageDraw

from rtavatar.data.face import FaceState, Renderer, sample_identity
from rtavatar.data.synth import identity_of_clip, SynthConfig
from rtavatar.data.visemes import VISEMES

ROWS: tuple[tuple[str, FaceState], ...] = (
    ("speak: AA", FaceState(mouth_open=VISEMES["AA"].open, mouth_width=VISEMES["AA"].width)),
    ("speak: UW", FaceState(mouth_open=VISEMES["UW"].open, mouth_width=VISEMES["UW"].width, mouth_round=VISEMES["UW"].round, pitch=3)),
    ("listen", FaceState(smile=0.6, brow_raise=0.5, eye_open_l=1.1, eye_open_r=1.1, pitch=6, yaw=-8)),
    ("idle: glance+blink", FaceState(gaze_x=-0.9, gaze_y=0.3, blink=0.6, yaw=12, roll=-6, smile=-0.1)),
)


def contact_sheet(n_identities: int = 16, resolution: int = 128, seed: int = 0, label_width: int = 150) -> np.ndarray:
    """An RGB image: one column per identity of dataset seed `seed`, one row per entry of ROWS."""
    cfg = SynthConfig(seed=seed)
    cols = []
    for k in range(n_identities):
        r = Renderer(sample_identity(identity_of_clip(cfg, k)), resolution)
        cols.append(np.concatenate([r.render(state) for _, state in ROWS], axis=0))
    grid = np.concatenate(cols, axis=1)
    sheet = Image.new("RGB", (grid.shape[1] + label_width, grid.shape[0]), (255, 255, 255))
    sheet.paste(Image.fromarray(grid), (label_width, 0))
    draw = ImageDraw.Draw(sheet)
    for i, (label, _) in enumerate(ROWS):
        draw.text((8, i * resolution + resolution // 2 - 6), label, fill=(0, 0, 0))
    return np.asarray(sheet)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", default="docs/contact_sheet.png")
    p.add_argument("--identities", type=int, default=16)
    p.add_argument("--resolution", type=int, default=128)
    a = p.parse_args()
    Image.fromarray(contact_sheet(a.identities, a.resolution)).save(a.out, optimize=True)


if __name__ == "__main__":
    main()
