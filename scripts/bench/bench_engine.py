"""The engine benchmark table of docs/BENCHMARKS.md: every row one `rtavatar bench` command,
all run one after the other in one go, so the ratios compare like with like.

    python scripts/bench/bench_engine.py --out docs/results/engine/bench_engine_cpu.json   # ~15 min on 2 cores

With a shipped model in the package, rows without --config or --checkpoint bench it (the
first twelve rows were measured before one shipped: random tiny weights).

Prints the markdown table (fps, ratio to the first row and to the teacher's path, first
frame, live lag, rtf, stage times, peak RSS) and writes the raw rows as JSON.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROWS = [
    "--steps 1",
    "--steps 1 --no-pipeline",
    "--steps 1 --quantize int8",
    "--steps 1 --quantize bf16",
    "--steps 1 --quantize fp32+bf16",
    "--steps 1 --quantize int8+bf16",
    "--steps 1 --backend onnxruntime",
    "--steps 2",
    "--steps 4",
    "--steps 1 --threads 1",
    "--steps 25 --seconds 4",
    "--config base --steps 1 --seconds 4",
    # The shipped model (the default once one ships) against random tiny weights, in one run;
    # --photo registers the bundled photo and pastes every frame back (the photo composite).
    "--config tiny --steps 1",
    "--config tiny --steps 1 --photo",
    "--steps 1 --photo",
    "--steps 1 --photo --quantize int8+bf16",
]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="docs/results/engine/bench_engine_cpu.json")
    p.add_argument("--seconds", default="10", help="seconds of speech per row unless the row says otherwise")
    p.add_argument("--rows", nargs="*", default=None, help="only these rows (indices)")
    a = p.parse_args()
    exe = Path(sys.executable).with_name("rtavatar")
    results = []
    for i, row in enumerate(ROWS):
        if a.rows is not None and str(i) not in a.rows:
            continue
        args = shlex.split(row)
        if "--seconds" not in args:
            args += ["--seconds", a.seconds]
        cmd = [str(exe), "bench", *args, "--json"]
        t = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        res = json.loads(out.stdout.strip().splitlines()[-1])
        res["command"] = "rtavatar bench " + " ".join(args)
        res["wall_s"] = round(time.perf_counter() - t, 1)
        results.append(res)
        print(f"[{i}] {res['command']}: {res['fps']} fps, first frame {res['first_frame_ms']} ms", file=sys.stderr, flush=True)
    Path(a.out).write_text(json.dumps(results, indent=1))
    base = results[0]["fps"]
    teacher = next((r["fps"] for r in results if r["steps"] >= 20 and r["resolution"] == results[0]["resolution"]), None)
    print("| command | px | steps | fps | x row 1 | x teacher | first frame ms | live lag ms | rtf | denoise / decode ms per frame | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        st = r["stage_ms_per_frame"]
        xt = f"{r['fps'] / teacher:.1f}" if teacher else "-"
        print(f"| `{r['command']}` | {r['resolution']} | {r['steps']}{' (CFG)' if r.get('cfg') else ''} | {r['fps']:.1f} | "
              f"{r['fps'] / base:.2f} | {xt} | {r['first_frame_ms']:.0f} | {r['lag_ms']:.0f} | {r['rtf']:.2f} | "
              f"{st['denoise']:.1f} / {st['decode']:.1f} | {r['peak_rss_mb']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
