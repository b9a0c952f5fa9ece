"""Photo-mode clips: the figure in docs/DATA.md and the ground-truth check.

    python scripts/photo_clips.py --data data/mix240 --out docs/images/photo_clips.png --check 40

Rows are photo clips (the first N of the dataset); columns are frames picked by their
ground truth: the widest-open mouth, a half-open one, a closed one, the deepest blink, the
biggest smile. `--check N` reads N speaking photo clips back with dlib and prints the
correlation between the inner-lip gap it measures and the written mouth_open.
"""

import argparse
import json

import numpy as np
from PIL import Image, ImageDraw

from rtavatar.data.dataset import Dataset
from rtavatar.data.photos import check_photo_clips


def sheet(data: str, rows: int) -> np.ndarray:
    ds = Dataset(data)
    out = []
    for i in range(len(ds)):
        if ds.meta(i).get("source") != "photo":
            continue
        c = ds.load(i)
        col = c.columns
        mo = col["mouth_open"]
        picks = [int(np.argmax(mo)), int(np.argmin(np.abs(mo - mo.max() / 2))), int(np.argmin(mo)),
                 int(np.argmax(col["blink"])), int(np.argmax(col["smile"]))]
        out.append(np.concatenate([c.frames[j] for j in picks], 1))
        if len(out) >= rows:
            break
    grid = np.concatenate(out, 0)
    img = Image.new("RGB", (grid.shape[1], grid.shape[0] + 16), "white")
    img.paste(Image.fromarray(grid), (0, 16))
    d = ImageDraw.Draw(img)
    for k, label in enumerate(("open", "half", "closed", "blink", "smile")):
        d.text((k * grid.shape[0] // rows + 4, 2), label, fill="black")
    return np.asarray(img)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", required=True)
    p.add_argument("--out", default="docs/images/photo_clips.png")
    p.add_argument("--rows", type=int, default=8)
    p.add_argument("--check", type=int, default=0)
    a = p.parse_args()
    Image.fromarray(sheet(a.data, a.rows)).save(a.out, optimize=True)
    if a.check:
        rows = check_photo_clips(a.data, a.check)
        r = np.array([x["r"] for x in rows])
        print(json.dumps({"clips": len(rows), "r_median": round(float(np.median(r)), 3), "r_min": round(float(r.min()), 3),
                          "detect_mean": round(float(np.mean([x["detect"] for x in rows])), 4)}))


if __name__ == "__main__":
    main()
