"""Rebuild the held-out photo folders of docs/RESULTS.md from ../shared/faces.

    python scripts/photo_sets.py --faces ../shared/faces --out data

Each set is a folder of copies named after their source folder (london_neutral_006_03.jpg),
so `rtavatar eval --photos data/<set>` reports rows with the names the tables use.

`--variants` also writes the set "mirror": every photo above flipped left-right and
re-framed, alternately a tight crop (the central 80 % of the shorter side) and a loose one
(the picture padded by 20 % of its shorter side with its own edge colours), so a model can be
checked on pictures no choice was made on (the same people, so not new identities).

`--inputs` writes the set "inputs": one held-out photo (london/neutral/026_03) as the odd
pictures users send: thumbnails of 120 and 200 px, greyscale, RGBA PNG, CMYK JPEG, a
rotation by 20 degrees, pixels stored sideways with an EXIF orientation tag, a face small in
a wide frame (padded to 3x), and a crop tighter than the face.
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


def odd_inputs(src: Image.Image, folder: Path) -> None:
    """The set "inputs" (module docstring), written into `folder` (JPEGs at PIL's default quality 75)."""
    src = src.convert("RGB")
    w, h = src.size
    for side in (120, 200):
        src.resize((side, int(side * h / w))).save(folder / f"tiny{side}.jpg")
    ImageOps.grayscale(src).save(folder / "gray.jpg")
    rgba = src.convert("RGBA")
    rgba.putalpha(200)
    rgba.save(folder / "rgba.png")
    src.convert("CMYK").save(folder / "cmyk.jpg")
    src.rotate(20, expand=True, fillcolor=(128, 128, 128)).save(folder / "rot20.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated 90 degrees clockwise
    src.rotate(90, expand=True).save(folder / "exif6.jpg", exif=exif)
    pad = np.pad(np.asarray(src), ((h, h), (w, w), (0, 0)), mode="edge")
    Image.fromarray(pad).resize((1500, int(1500 * pad.shape[0] / pad.shape[1]))).save(folder / "loose3x.jpg")
    Image.fromarray(np.asarray(src)[int(0.3 * h) : int(0.8 * h), int(0.25 * w) : int(0.75 * w)]).save(folder / "verytight.jpg")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--faces", type=Path, default=Path("../shared/faces"))
    ap.add_argument("--out", type=Path, default=Path("data"))
    ap.add_argument("--variants", action="store_true", help="also write the mirrored, re-framed set \"mirror\"")
    ap.add_argument("--inputs", action="store_true", help="also write the odd-pictures set \"inputs\"")
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
    if args.inputs:
        folder = args.out / "inputs"
        folder.mkdir(parents=True, exist_ok=True)
        odd_inputs(Image.open(args.faces / "london/neutral/026_03.jpg"), folder)
        print(f"{folder}: {len(list(folder.iterdir()))} pictures")


if __name__ == "__main__":
    main()
