"""Plot a run's training curve (log.jsonl) to a PNG: python scripts/plot_curve.py RUN [RUN...] --out FILE.png"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("runs", nargs="+")
    p.add_argument("--out", required=True)
    p.add_argument("--key", default="loss")
    p.add_argument("--fallback", default=None, help="key plotted for runs that did not log --key (e.g. --key mse --fallback loss)")
    p.add_argument("--smooth", type=int, default=20, help="moving-average window in logged points")
    p.add_argument("--offsets", type=int, nargs="*", default=[], help="per run, steps to add (a warm-started run continues another)")
    a = p.parse_args()
    fig, ax = plt.subplots(figsize=(7, 3.5), dpi=110)
    for i_run, run in enumerate(a.runs):
        recs = [json.loads(x) for x in (Path(run) / "log.jsonl").read_text().splitlines() if x.strip()]
        offset = a.offsets[i_run] if i_run < len(a.offsets) else 0
        steps = [r["step"] + offset for r in recs]
        key = a.key if a.key in recs[0] or not a.fallback else a.fallback
        vals = [r[key] for r in recs]
        k = max(1, min(a.smooth, len(vals)))
        smooth = [sum(vals[max(0, i - k + 1) : i + 1]) / len(vals[max(0, i - k + 1) : i + 1]) for i in range(len(vals))]
        (line,) = ax.plot(steps, smooth, label=f"{Path(run).name} ({key}, {k}-point mean)", zorder=3)
        ax.plot(steps, vals, color=line.get_color(), alpha=0.2, lw=0.6)
    ax.set_xlabel("step")
    ax.set_ylabel(a.key)
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(a.out)


if __name__ == "__main__":
    main()
