"""End-to-end: the real app (``medmat serve``'s server and page) driven in headless Chromium by Playwright.

The steps a user takes: open a 256 x 256 phantom PNG, see the matte, click a proposed patch,
label it, see the matte change (and measure the time from the click to the new matte drawn, in
the browser), undo, paint a brush stroke, save and check the files, upload a broken file and read
the message, and move the slice slider of a NIfTI volume. A second test clicks a probe on a model
that is sure of the phantom's background and lesion (conftest's ``image_following_run``), answers
its alpha with a key, and checks that the matte changes near the click and not where the model
is sure, then undoes it. The model is the wired tiny "nig" run (conftest's ``wired_nig_run``), or any run named by
``MEDMAT_APP_RUN`` (and, with it, an image of that run's kind named by ``MEDMAT_APP_IMAGE``). With ``MEDMAT_APP_SCREENSHOTS=1`` each step's screenshot is written to
``docs/figures/app-*.png``.

Needs Debian's ``chromium`` (``/usr/bin/chromium``; browsers cannot be downloaded here) and the
``playwright`` package: skipped with the reason when either is missing, failed under CI.
"""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import os
import statistics
import time
from pathlib import Path

import nibabel
import numpy as np
import pytest
from PIL import Image

from medmat.app.server import serve_in_thread
from medmat.app.session import MattingSession
from medmat.data.phantom import make_phantom
from medmat.interaction.fusion import fusion_uncertainty
from test_app_session import phantom_png
from tiny_configs import load_benchmark

pytestmark = pytest.mark.e2e

# The browser and its flags are the latency benchmark's, so that both drive the same Chromium.
_LATENCY = load_benchmark("app_probe_latency")
CHROMIUM, CHROMIUM_ARGS = _LATENCY.CHROMIUM, _LATENCY.CHROMIUM_ARGS
SCREENSHOTS = Path(__file__).resolve().parents[1] / "docs" / "figures"
#: Labels timed after the first one (the first also warms up the page and the model).
TIMED_CLICKS = 4
TIMEOUT_MS = 30_000


def _missing_requirement() -> str | None:
    if not os.path.exists(CHROMIUM):
        return f"no browser at {CHROMIUM} (apt-get install chromium)"
    if importlib.util.find_spec("playwright") is None:
        return "the playwright package is not installed (pip install playwright==1.65.2)"
    return None


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium; skips (fails under CI) when the browser or Playwright is missing."""
    reason = _missing_requirement()
    if reason is not None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(reason)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture()
def app(browser, wired_nig_run, tmp_path):
    """The server in a thread on a free port, over a session on the wired run (or $MEDMAT_APP_RUN)."""
    run = os.environ.get("MEDMAT_APP_RUN") or wired_nig_run
    session = MattingSession.from_run(run, num_proposals=4, patch_size=32)
    with serve_in_thread(session, str(tmp_path / "saved")) as server:
        yield server


def _screenshot(page, name: str) -> None:
    if os.environ.get("MEDMAT_APP_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"app-{name}.png"), full_page=True)


def _pixels(url: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))


def _click_patch(page, patch: dict) -> None:
    """Click the centre of a proposed patch on the viewer's canvas."""
    box = page.locator("#marks").bounding_box()
    height, width = page.evaluate("window.medmatApp.payload.state.image.shape")
    x = box["x"] + (patch["left"] + patch["width"] / 2) / width * box["width"]
    y = box["y"] + (patch["top"] + patch["height"] / 2) / height * box["height"]
    page.mouse.click(x, y)


def _label_first_patch(page, label: str) -> tuple[dict, float, float]:
    """Select the most uncertain patch, press the label's button; (patch, browser ms, test ms) once drawn."""
    patch = page.evaluate("window.medmatApp.payload.state.proposals[0]")
    _click_patch(page, patch)
    page.wait_for_selector("#proposals li.selected")
    updates = page.evaluate("window.medmatApp.updates")
    started = time.perf_counter()
    page.click(f"button.label[data-label={label}]")
    page.wait_for_function(f"() => window.medmatApp.updates === {updates + 1}", timeout=TIMEOUT_MS)
    return patch, page.evaluate("window.medmatApp.lastUpdateMs"), 1000 * (time.perf_counter() - started)


def test_open_label_undo_paint_save_and_a_bad_upload_in_the_browser(app, browser, tmp_path):
    # $MEDMAT_APP_IMAGE: a greyscale PNG of the trained run's kind (screenshots with a real model).
    image = Path(os.environ.get("MEDMAT_APP_IMAGE") or phantom_png(tmp_path / "phantom-256.png", size=256))
    stem = image.stem
    height, width = np.asarray(Image.open(image)).shape[:2]
    page = browser.new_page(viewport={"width": 1360, "height": 980})
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(app.url)
    page.wait_for_selector("body[data-ready=true]")
    assert page.locator("#empty").is_visible()

    # 1. Open the image: the matte, the maps, the sampled masks and the proposals appear.
    page.set_input_files("#file", str(image))
    page.wait_for_selector("#map-alpha[src^='data:image/png']", timeout=TIMEOUT_MS)
    assert page.locator("#maps figure").count() == 7  # image, alpha, 2 entropies, epistemic, aleatoric, user map
    assert page.locator("#proposals li").count() == 4 and page.locator("#counter").inner_text() == "0"
    assert page.locator("#image-info").inner_text().startswith(f"{image.name} · {height} × {width}")
    first_alpha = page.get_attribute("#map-alpha", "src")
    _screenshot(page, "1-opened")

    # 2. Choose the patch tool, click the most uncertain patch: it is selected and the label buttons come on.
    page.check("input[name=tool][value=patch]")
    patch = page.evaluate("window.medmatApp.payload.state.proposals[0]")
    _click_patch(page, patch)
    page.wait_for_selector("#proposals li.selected")
    assert page.is_enabled("button.label[data-label=foreground]")
    _screenshot(page, "2-patch-selected")

    # 3. Label it foreground: the matte changes inside the patch and the counter says 1.
    _, browser_ms, test_ms = _label_first_patch(page, "foreground")
    assert page.locator("#counter").inner_text() == "1"
    labelled_alpha = page.get_attribute("#map-alpha", "src")
    assert page.get_attribute("#overlay-image", "src") == labelled_alpha  # the viewer's overlay is the matte
    rows = slice(patch["top"], patch["top"] + patch["height"])
    cols = slice(patch["left"], patch["left"] + patch["width"])
    before, after = _pixels(first_alpha), _pixels(labelled_alpha)
    assert np.any(before[rows, cols] != after[rows, cols])
    _screenshot(page, "3-labelled")

    # 4. Undo: the first matte is back; label again, timing each click to the new matte.
    page.click("#undo")
    page.wait_for_function("() => document.getElementById('counter').textContent === '0'")
    assert page.get_attribute("#map-alpha", "src") == first_alpha
    timings = [_label_first_patch(page, label)[1:] for label in ("background", "transition", "foreground",
                                                                  "background")[:TIMED_CLICKS]]
    assert page.locator("#counter").inner_text() == str(TIMED_CLICKS)

    # 5. Paint a background stroke with the brush.
    page.check("input[name=tool][value=brush]")
    page.click("button.label[data-label=background]")
    box = page.locator("#marks").bounding_box()
    updates = page.evaluate("window.medmatApp.updates")
    page.mouse.move(box["x"] + 20, box["y"] + 20)
    page.mouse.down()
    page.mouse.move(box["x"] + 80, box["y"] + 40, steps=8)
    page.mouse.up()
    page.wait_for_function(f"() => window.medmatApp.updates === {updates + 1}", timeout=TIMEOUT_MS)
    assert page.locator("#counter").inner_text() == str(TIMED_CLICKS + 1)

    # 6. Save: the files are in the output folder and the page lists them.
    page.click("#save")
    page.wait_for_selector("#saved:not([hidden])")
    folder = Path(app.output)
    record = json.loads((folder / f"{stem}_interactions.json").read_text())
    assert [entry["kind"] for entry in record["interactions"]] == ["patch"] * TIMED_CLICKS + ["stroke"]
    for name in ("alpha", "uncertainty", "lesion_uncertainty", "epistemic", "aleatoric", "user_map"):
        assert (folder / f"{stem}_{name}.png").is_file() and (folder / f"{stem}_{name}.nii.gz").is_file()
    assert f"{stem}_alpha.nii.gz" in page.locator("#saved").inner_text()
    _screenshot(page, "4-saved")

    # 7. A broken upload: a readable message in the page; the server and the open image stay.
    page.set_input_files("#file", files=[{"name": "broken.png", "mimeType": "image/png", "buffer": b"not a png"}])
    page.wait_for_selector("#message:not(.busy):not([hidden])")
    assert page.locator("#message").inner_text().startswith("broken.png: not a readable PNG")
    assert page.locator("#counter").inner_text() == str(TIMED_CLICKS + 1)
    _screenshot(page, "5-bad-upload")

    # 8. A NIfTI volume: the middle slice first, the slider shows another.
    volume = np.stack([make_phantom(seed, size=128).image[0] * 1000 - 200 for seed in range(3)], axis=-1)
    nibabel.save(nibabel.Nifti1Image(volume.astype(np.float32), np.diag([0.7, 0.7, 2.0, 1.0])), tmp_path / "scan.nii.gz")
    page.set_input_files("#file", str(tmp_path / "scan.nii.gz"))
    page.wait_for_selector("#slice-control:not([hidden])", timeout=TIMEOUT_MS)
    assert "slice 2 of 3" in page.locator("#image-info").inner_text()
    page.eval_on_selector("#slice", "(slider) => { slider.value = '0'; slider.dispatchEvent(new Event('change')); }")
    page.wait_for_function("() => document.getElementById('image-info').textContent.includes('slice 1 of 3')",
                           timeout=TIMEOUT_MS)
    _screenshot(page, "6-volume-slice")
    assert errors == []

    browser_times = [browser_ms] + [entry[0] for entry in timings]
    test_times = [test_ms] + [entry[1] for entry in timings]
    server_seconds = [entry["seconds"] for entry in record["interactions"] if entry["kind"] == "patch"]
    print(f"\nclick to updated matte, 256 x 256, model {app.session.model_name!r} ({app.session.run}): "
          f"browser median {statistics.median(browser_times):.0f} ms, max {max(browser_times):.0f} ms; "
          f"seen by the test median {statistics.median(test_times):.0f} ms; of which the server's "
          f"prediction and NIG sum median {1000 * statistics.median(server_seconds):.0f} ms")
    assert statistics.median(browser_times) < 5000
    page.close()


def test_a_probe_moves_the_matte_near_the_click_and_not_where_the_model_is_sure(browser, image_following_run,
                                                                               tmp_path):
    session = MattingSession.from_run(image_following_run)
    image = phantom_png(tmp_path / "phantom-256.png", size=256)
    with serve_in_thread(session, str(tmp_path / "saved")) as server:
        page = browser.new_page(viewport={"width": 1360, "height": 980})
        errors = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(server.url)
        page.wait_for_selector("body[data-ready=true]")
        page.set_input_files("#file", str(image))
        page.wait_for_selector("#map-alpha[src^='data:image/png']", timeout=TIMEOUT_MS)
        assert page.is_checked("input[name=tool][value=probe]")  # the probe is the first tool
        first_alpha = page.get_attribute("#map-alpha", "src")
        first = session.current
        # The most uncertain pixel: on the lesion's border.
        row, col = np.unravel_index(int(np.argmax(first.maps["lesion_uncertainty"])), (256, 256))
        box = page.locator("#marks").bounding_box()
        page.mouse.click(box["x"] + (col + 0.5) / 256 * box["width"], box["y"] + (row + 0.5) / 256 * box["height"])
        assert page.is_enabled("button.level[data-level='4']")
        assert page.evaluate("window.medmatApp.probe") == [int(row), int(col)]
        updates = page.evaluate("window.medmatApp.updates")
        page.keyboard.press("4")  # alpha 1 at the point
        page.wait_for_function(f"() => window.medmatApp.updates === {updates + 1}", timeout=TIMEOUT_MS)
        assert page.locator("#counter").inner_text() == "1"
        assert page.evaluate("window.medmatApp.payload.state.probes") == [
            {"kind": "probe", "row": int(row), "col": int(col), "value": 1.0}]
        _screenshot(page, "7-probe")
        before, after = _pixels(first_alpha).astype(int), _pixels(page.get_attribute("#map-alpha", "src")).astype(int)
        changed = np.abs(after - before).sum(axis=-1) > 0
        distance = np.hypot(*np.mgrid[:256, :256] - np.array([row, col])[:, None, None])
        assert changed[distance <= 3].mean() > 0.5  # the matte moved near the click
        # The pixels the model is sure of lie outside the band the fusion solves, and keep their matte.
        sure = fusion_uncertainty(first.maps) < session.fusion_params.band_uncertainty
        kept = ~session.current.fusion.domain
        assert sure.mean() > 0.5 and (sure & kept).sum() > 0.5 * sure.sum()
        assert not changed[kept].any()
        page.click("#undo")
        page.wait_for_function("() => document.getElementById('counter').textContent === '0'")
        assert page.get_attribute("#map-alpha", "src") == first_alpha
        assert errors == []
        page.close()
