"""Load test of `rtavatar serve`: N concurrent WebSocket sessions, each streaming espeak-ng
speech at real-time pace in 20 ms chunks, as live clients would.

    python scripts/bench/load_test.py [--sessions 1 2 3 4] [--seconds 8] [--precision int8+bf16] [--photo [PATH]]
        [--paste-mode warp] [--out docs/results/engine/load_cpu.json]

Starts a server on a free loopback port (the shipped model, else random tiny weights, unless
--checkpoint), then for each N runs N clients at once and reports, per session, the frames'
rate as received, the first-frame latency, and how far the last frame came after its audio
(the lag: it grows without bound when the server cannot keep real time). Bounded in count
and time; loopback only. Without --photo each client sends a plain centre-aligned crop and
asks for no paste-back (the model's cost alone); with --photo (default: the bundled sample)
the face is found and every frame is pasted back into the photo (`--paste-mode`).
"""

from __future__ import annotations

import argparse
import io
import json
import socket
import sys
import threading
import time
from pathlib import Path



def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sessions", type=int, nargs="+", default=[1, 2, 3, 4])
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--precision", default="int8+bf16")
    p.add_argument("--photo", nargs="?", const="sample", default=None, help="paste back into this photo (default: the sample)")
    p.add_argument("--paste-mode", default="warp", choices=["warp", "photo", "face"])
    p.add_argument("--no-capacity", action="store_true", help="admit up to max(--sessions) without measuring capacity")
    p.add_argument("--generate", type=int, default=0, help="also post this many concurrent /v1/generate jobs 1 s into each run")
    p.add_argument("--out", default=None)
    a = p.parse_args()
    import uvicorn
    from PIL import Image

    from rtavatar.commands.bench import bench_speech, plain_portrait
    from rtavatar.client import AvatarClient
    from rtavatar.server.app import ServerConfig, create_app, load_avatar, warm_up

    avatar, model = load_avatar(a.checkpoint, a.precision)
    warm_up(avatar)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = ServerConfig(max_sessions=max(a.sessions), model=model)
    app = create_app(avatar, cfg)
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=srv.run, daemon=True).start()
    while not srv.started:
        time.sleep(0.05)
    capacity = None
    if not a.no_capacity:  # as `rtavatar serve` does at start-up: throughputs, then the live fit over the server
        from rtavatar.assets import SAMPLE_PORTRAIT
        from rtavatar.server.capacity import calibrate, measure

        rates = measure(avatar, str(SAMPLE_PORTRAIT))
        calibrate(app.state.hub.cap, rates, f"ws://127.0.0.1:{port}/v1/stream", SAMPLE_PORTRAIT.read_bytes()).join()
        capacity = app.state.hub.cap.costs
    speech = bench_speech(a.seconds)
    if a.photo:
        from rtavatar.assets import SAMPLE_PORTRAIT

        portrait = Path(SAMPLE_PORTRAIT if a.photo == "sample" else a.photo).read_bytes()
        start = {"align": "face", "paste": {"mode": a.paste_mode}}
    else:
        buf = io.BytesIO()
        Image.fromarray(plain_portrait(avatar.resolution)).save(buf, "PNG")
        portrait = buf.getvalue()
        start = {"align": "center", "paste": {"back": False}}

    def client(results: list, i: int) -> None:
        with AvatarClient(f"ws://127.0.0.1:{port}/v1/stream") as c:
            try:
                c.start(portrait, live=False, **start)
            except RuntimeError as e:  # refused: at capacity
                results[i] = {"refused": str(e)}
                return
            t0 = time.perf_counter()
            pushed_at = []

            def feed() -> None:
                for k, j in enumerate(range(0, len(speech), 320)):
                    time.sleep(max(0.0, t0 + k * 0.02 - time.perf_counter()))
                    c.push(speech[j : j + 320])
                    pushed_at.append(time.perf_counter())
                c.end()

            threading.Thread(target=feed, daemon=True).start()
            arrivals = [(f.index, time.perf_counter()) for f in c.frames(timeout=120)]
            first = next((m["ms"] for m in c.messages if m["type"] == "first_frame"), None)
            n = len(arrivals)
            skip = min(25, n // 2)
            fps = (n - skip) / max(arrivals[-1][1] - arrivals[skip - 1][1], 1e-9) if skip else 0.0
            last_audio = pushed_at[-1] if pushed_at else t0
            results[i] = {"frames": n, "fps": round(fps, 1), "first_frame_ms": first,
                          "final_lag_ms": round(1000 * (arrivals[-1][1] - last_audio), 0) if arrivals else None}

    def job(codes: list) -> None:  # an offline job beside the live sessions
        import httpx
        import soundfile as sf

        wav = io.BytesIO()
        sf.write(wav, speech, 16000, format="WAV")
        t = time.perf_counter()
        r = httpx.post(f"http://127.0.0.1:{port}/v1/generate", files={"portrait": ("p.png", portrait), "audio": ("a.wav", wav.getvalue())},
                       data={"align": start["align"], "paste": json.dumps(start["paste"])}, timeout=300)
        codes.append({"status": r.status_code, "seconds": round(time.perf_counter() - t, 1)})

    rows = []
    for n in a.sessions:
        results: list = [None] * n
        threads = [threading.Thread(target=client, args=(results, i)) for i in range(n)]
        for t in threads:
            t.start()
        codes: list = []
        if a.generate:
            time.sleep(1.0)
            jobs = [threading.Thread(target=job, args=(codes,)) for _ in range(a.generate)]
            for t in jobs:
                t.start()
            threads += jobs
        for t in threads:
            t.join(timeout=300)
        served = [r for r in results if "fps" in r]
        row = {"sessions": n, "per_session": results, "admitted": len(served), "refused": n - len(served),
               "min_fps": min(r["fps"] for r in served), "max_final_lag_ms": max(r["final_lag_ms"] for r in served),
               "generate": codes}
        row["real_time"] = row["min_fps"] >= 24.5 and row["max_final_lag_ms"] < 1500
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    srv.should_exit = True
    out = {"model": model, "precision": a.precision, "seconds": a.seconds, "photo": a.photo, "capacity": capacity,
           "paste_mode": a.paste_mode if a.photo else None, "rows": rows,
           "largest_real_time": max([r["admitted"] for r in rows if r["real_time"]], default=0)}
    if a.out:
        Path(a.out).write_text(json.dumps(out, indent=1))
    print(json.dumps({k: v for k, v in out.items() if k != "rows"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
