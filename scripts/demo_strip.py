"""The README's demo strip: the bundled photo, then five frames of `rtavatar demo`, with the
mouth region of each enlarged underneath (the part the model moves).

    python scripts/demo_strip.py [--video demo.mp4] --out docs/images/demo_strip.png

The five frames are the quietest one and four at rising speech energy, so the strip shows
how far the mouth opens, not a lucky frame.
"""

import argparse
from importlib.resources import files

import numpy as np
from PIL import Image

from rtavatar import SAMPLES_PER_FRAME
from rtavatar.photo.align import register
from rtavatar.media import read_image, read_video


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--video", default="demo.mp4", help="what `rtavatar demo` wrote")
    ap.add_argument("--image", default=str(files("rtavatar") / "assets" / "portraits" / "lisa.jpg"))
    ap.add_argument("--out", required=True)
    ap.add_argument("--height", type=int, default=240)
    a = ap.parse_args()
    photo = read_image(a.image)
    clip = read_video(a.video)
    frames, audio = clip.frames, clip.audio
    n = min(len(frames), len(audio) // SAMPLES_PER_FRAME)
    rms = np.sqrt((audio[: n * SAMPLES_PER_FRAME].reshape(n, -1) ** 2).mean(1))
    order = np.argsort(rms)
    pick = [int(order[0])] + [int(order[int(q * (n - 1))]) for q in (0.7, 0.85, 0.95, 1.0)]
    p = register(photo, 128, "face")
    pts = p.landmarks
    mx0, mx1 = int(pts[48:68, 0].min()), int(pts[48:68, 0].max())
    my0, my1 = int(pts[48:68, 1].min()), int(pts[48:68, 1].max())
    w = mx1 - mx0
    box = (max(mx0 - w // 2, 0), max(my0 - w // 3, 0), mx1 + w // 2, my1 + w // 3)

    def tile(img: np.ndarray) -> tuple[Image.Image, Image.Image]:
        full = Image.fromarray(img)
        full = full.resize((round(full.width * a.height / full.height), a.height))
        mouth = Image.fromarray(img).crop(box)
        return full, mouth.resize((full.width, round(mouth.height * full.width / mouth.width)))

    tiles = [tile(photo)] + [tile(frames[i]) for i in pick]
    W, H = sum(t[0].width for t in tiles), a.height + max(t[1].height for t in tiles)
    sheet = Image.new("RGB", (W, H), "white")
    x = 0
    for full, mouth in tiles:
        sheet.paste(full, (x, 0))
        sheet.paste(mouth, (x, a.height))
        x += full.width
    sheet.save(a.out)
    print(f"{a.out}: photo + frames {pick} (speech RMS {', '.join(f'{rms[i]:.3f}' for i in pick)})")


if __name__ == "__main__":
    main()
