"""Click to updated matte in the browser for alpha probes (issue 15: under 0.5 s at 256² on 2 cores).

Serves the real app (``medmat serve``'s server and page) on a run's model in a background thread,
opens a 256 x 256 image in headless Chromium (Debian's ``/usr/bin/chromium`` through Playwright, as
the end-to-end test), and answers ``--clicks`` probes, each at the most uncertain pixel not yet
clicked, with a level key. Per probe it reports the app's own measure (``window.medmatApp.lastUpdateMs``:
from the key press to the frame showing the new matte, in the browser) and the server's fusion time.

    python benchmarks/app_probe_latency.py --run runs/brain-lite-bf16/fold-0 [--image IMAGE.png] [--clicks 5]

Without ``--image`` a 256² phantom is written to a temporary folder. Needs Chromium and playwright.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

from machine import describe_machine, finish_report, machine_line  # benchmarks/ is the script's folder
from medmat.app.server import serve_in_thread
from medmat.app.session import MattingSession
from medmat.data.phantom import make_phantom
from medmat.errors import MedmatError
from medmat.interaction.fusion import fusion_uncertainty
from medmat.io.images import write_png

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
TIMEOUT_MS = 60_000
TARGET_MS = 500.0


def probe_latencies(run: str, image: Path, clicks: int, folder: str) -> dict:
    """Open ``image`` in the app on ``run``'s model and time ``clicks`` probes answered with level 4 or 0."""
    from playwright.sync_api import sync_playwright

    session = MattingSession.from_run(run)
    with serve_in_thread(session, folder) as server, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1360, "height": 980})
        page.goto(server.url)
        page.wait_for_selector("body[data-ready=true]")
        page.set_input_files("#file", str(image))
        page.wait_for_selector("#map-alpha[src^='data:image/png']", timeout=TIMEOUT_MS)
        uncertainty = fusion_uncertainty(session.current.maps)
        height, width = uncertainty.shape
        order = np.argsort(uncertainty, axis=None)[::-1]
        browser_ms, fusion_ms = [], []
        for row, col in (np.unravel_index(int(index), (height, width)) for index in order[:clicks]):
            box = page.locator("#marks").bounding_box()
            page.mouse.click(box["x"] + (col + 0.5) / width * box["width"],
                             box["y"] + (row + 0.5) / height * box["height"])
            updates = page.evaluate("window.medmatApp.updates")
            # Answer the side the matte is not on, so that every probe moves it.
            page.keyboard.press("4" if session.current.maps["alpha"][row, col] < 0.5 else "0")
            page.wait_for_function(f"() => window.medmatApp.updates === {updates + 1}", timeout=TIMEOUT_MS)
            browser_ms.append(float(page.evaluate("window.medmatApp.lastUpdateMs")))
            fusion_ms.append(1000.0 * float(session.current.fusion.seconds))
        browser.close()
    return {"image": str(image), "shape": [height, width], "model": session.model_name,
            "browser_ms": browser_ms, "fusion_ms": fusion_ms}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a train run or crossval fold")
    parser.add_argument("--image", default=None, help="a PNG to open (default: a 256² phantom)")
    parser.add_argument("--clicks", type=int, default=5)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    if not os.path.exists(CHROMIUM):
        print(f"error: no browser at {CHROMIUM} (apt-get install chromium)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as folder:
        image = Path(args.image) if args.image else Path(folder) / "phantom-256.png"
        if args.image is None:
            write_png(image, make_phantom(3, size=256).image)
        try:
            result = probe_latencies(args.run, image, args.clicks, os.path.join(folder, "saved"))
        except (MedmatError, ImportError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
    times = result["browser_ms"]
    lines = [f"{len(times)} probes on {result['shape'][0]}x{result['shape'][1]}, model {result['model']!r} ({args.run})",
             f"key press to updated matte in the browser: median {statistics.median(times):.0f} ms, "
             f"max {max(times):.0f} ms; ratio to the {TARGET_MS:.0f} ms target (median) "
             f"{statistics.median(times) / TARGET_MS:.2f}",
             f"of which the server's fusion: median {statistics.median(result['fusion_ms']):.0f} ms",
             machine_line()]
    return finish_report({**result, "run": args.run, "machine": describe_machine()}, "\n".join(lines), args.json)


if __name__ == "__main__":
    sys.exit(main())
