"""Add `listen_open` (evaluation/photos.py) to the rows of an `eval --photos --out` JSON written
before that column existed. It is computed exactly from the stored means: the listening run's
speech-frame gap is listen_gap x gap_speech, and the photo's own gap is dlib's reading of the
photo, as `score_photo` takes it.

    python scripts/listen_open.py --rows docs/photo_eval_v4_cpu.json --photos data/w33_a --photos data/w33_b [--out F]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rtavatar.evaluation.photos import FaceReader, list_photos, listen_open, passes
from rtavatar.media import read_image


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", required=True)
    ap.add_argument("--photos", action="append", required=True, help="where the photos are (repeatable)")
    ap.add_argument("--out", default=None, help="default: rewrite --rows")
    args = ap.parse_args()
    paths = {p.name: p for d in args.photos for p in list_photos(d)}
    reader, rows = FaceReader(), json.loads(Path(args.rows).read_text())
    for row in rows:
        if "error" in row or "listen_gap" not in row:
            continue
        rest = row["photo_gap"] = float(reader.read(read_image(paths[row["photo"]]), embed=False)["features"][2])
        row["listen_open"] = listen_open(row["listen_gap"] * row["gap_speech"], row["gap_speech"], rest)
        row["pass"] = passes(row)
        print(f"{row['photo']:32s} photo gap {rest:.3f}  listen_gap {row['listen_gap']:.2f}  listen_open {row['listen_open']:.2f}")
    Path(args.out or args.rows).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
