"""A/V offset at the browser: headless Chromium plays a running `rtavatar serve` page with a
fake microphone, and Chrome's own playout estimates (getStats, inbound-rtp
estimatedPlayoutTimestamp of the audio and the video track) give video minus audio, once a
second.

    rtavatar serve --port 8765 [--precision fp32]    # in another shell
    python scripts/bench/av_offset.py --url http://127.0.0.1:8765/ --mic speech.wav [--seconds 14]
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default="http://127.0.0.1:8765/")
    p.add_argument("--mic", required=True, help="a 16 kHz wav the fake microphone plays (in a loop)")
    p.add_argument("--seconds", type=int, default=14)
    a = p.parse_args()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={a.mic}", "--autoplay-policy=no-user-gesture-required",
            "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"])
        page = b.new_page()
        page.goto(a.url)
        page.wait_for_function("document.querySelectorAll('#bundled option').length > 0")
        page.click("#start")
        page.wait_for_function("document.getElementById('avatar').currentTime > 1.0", timeout=60000)
        offsets = []
        for _ in range(a.seconds):
            page.wait_for_timeout(1000)
            st = page.evaluate("""async () => { const out = {}; (await pc.getStats()).forEach(s => {
                if (s.type === 'inbound-rtp') out[s.kind] = s.estimatedPlayoutTimestamp; }); return out; }""")
            if st.get("audio") and st.get("video"):
                offsets.append(st["video"] - st["audio"])
        stats = page.text_content("#stats").replace("\n", " | ")
        b.close()
    tail = offsets[-10:]
    print(json.dumps({"offsets_ms": offsets, "median_last10_ms": float(np.median(tail)) if tail else None,
                      "max_abs_last10_ms": float(np.abs(tail).max()) if tail else None, "page_stats": stats}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
