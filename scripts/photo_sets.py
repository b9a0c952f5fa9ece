"""Rebuild the held-out photo folders of docs/RESULTS.md from ../shared/faces.

    python scripts/photo_sets.py --faces ../shared/faces --out data

Each set is a folder of copies named after their source folder (london_neutral_006_03.jpg),
so `rtavatar eval --photos data/<set>` reports rows with the names the tables use.

`--variants` also writes the set "mirror": every photo above flipped left-right and
re-framed, alternately a tight crop (the central 80 % of the shorter side) and a loose one
(the picture padded by 20 % of its shorter side with its own edge colours), so a model can be
checked on pictures no choice was made on (the same people, so not new identities).
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

SETS: dict[str, list[str]] = {
    "report": ["canada/065f", "cc0/lisa/lisa1", "cc0/zoom/30cm", "london/neutral/042_03"],
    "fresh": ["canada/070f", "canada/129m", "canada/151m", "cc0/zoom/15cm", "london/neutral/014_03",
              "london/neutral/102_03", "london/neutral/134_03", "london/smiling/112_08"],
    "dev": ["canada/114m", "cc0/zoom/60cm", "london/neutral/006_03", "london/neutral/099_03",
            "london/smiling/026_08"],
    "fresh2": ["canada/100m", "canada/147m", "cc0/lisa/lisa2", "cc0/zoom/45cm", "london/smiling/014_08",
               "london/smiling/134_08"],
    "fresh3": ["cc0/lisa/lisa3", "cc0/lisa/lisa4", "london/neutral/026_03", "london/neutral/112_03",
               "london/smiling/006_08", "london/smiling/039_08", "london/smiling/042_08",
               "london/smiling/099_08", "london/smiling/102_08"],
}
# The tight crop (chin near the edge) of the dev set: (left, top, right, bottom) in pixels.
CROPS = {"dev": [("london/neutral/039_03", "london_neutral_039_03_tight", (300, 290, 740, 730))]}


def variant(img: Image.Image, tight: bool) -> Image.Image:
    """Mirrored, then a tight crop or a loose frame (module docstring)."""
    img = ImageOps.mirror(img.convert("RGB"))
    w, h = img.size
    side = min(w, h)
    if tight:
        c = int(0.8 * side)
        return img.crop(((w - c) // 2, (h - c) // 2, (w - c) // 2 + c, (h - c) // 2 + c))
    pad = int(0.2 * side)
    return Image.fromarray(np.pad(np.asarray(img), ((pad, pad), (pad, pad), (0, 0)), mode="edge"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--faces", type=Path, default=Path("../shared/faces"))
    ap.add_argument("--out", type=Path, default=Path("data"))
    ap.add_argument("--variants", action="store_true", help="also write the mirrored, re-framed set \"mirror\"")
    args = ap.parse_args()
    for name, stems in SETS.items():
        folder = args.out / name
        folder.mkdir(parents=True, exist_ok=True)
        for stem in stems:
            src = args.faces / f"{stem}.jpg"
            shutil.copyfile(src, folder / (stem.replace("/", "_") + ".jpg"))
        for stem, out_name, box in CROPS.get(name, []):
            Image.open(args.faces / f"{stem}.jpg").crop(box).save(folder / f"{out_name}.jpg", quality=95)
        print(f"{folder}: {len(list(folder.glob('*.jpg')))} photos")
    if args.variants:
        folder = args.out / "mirror"
        folder.mkdir(parents=True, exist_ok=True)
        stems = [s for name in SETS for s in SETS[name]]
        for i, stem in enumerate(stems):
            tight = i % 2 == 0
            out = folder / (stem.replace("/", "_") + ("_mirror_tight" if tight else "_mirror_loose") + ".jpg")
            variant(Image.open(args.faces / f"{stem}.jpg"), tight).save(out, quality=95)
        print(f"{folder}: {len(stems)} photos")


if __name__ == "__main__":
    main()
