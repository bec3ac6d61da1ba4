"""The browser app's HTTP layer (medmat.app.server): the page, the JSON API, errors that never stop the server.

A server on a free port of 127.0.0.1 runs in a thread over a session on the wired tiny "nig" run
of conftest.py (``wired_nig_run``); the tests drive it with urllib, as the page does with fetch.
"""

from __future__ import annotations

import base64
import io
import json
import urllib.error
import urllib.request

import numpy as np
import pytest
from PIL import Image

from medmat.app.server import colour_table, serve_in_thread
from medmat.app.session import MattingSession
from test_app_session import phantom_png
from tiny_configs import MEDICAL_TINY, save_run


# Tiny networks: a second thread only waits on a shared CPU.
pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture()
def server(wired_nig_run, tmp_path):
    session = MattingSession.from_run(wired_nig_run, num_proposals=2, num_samples=2)
    with serve_in_thread(session, str(tmp_path / "saved")) as server:
        yield server


def request(server, path, data=None, json_body=None, headers=None, method=None):
    """(status, headers, body bytes) of one request; POSTs carry X-Medmat: 1 unless ``headers`` say otherwise."""
    posting = data is not None or json_body is not None or method == "POST"
    headers = {"X-Medmat": "1", **(headers or {})} if posting else dict(headers or {})
    if json_body is not None:
        data = json.dumps(json_body).encode()
        headers["Content-Type"] = "application/json"
    call = urllib.request.Request(server.url.rstrip("/") + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(call, timeout=30) as answer:
            return answer.status, answer.headers, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def api(server, path, **options):
    status, _, body = request(server, path, **options)
    return status, json.loads(body)


def decoded(url: str) -> np.ndarray:
    assert url.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))


def layer(payload, key):
    return next(entry for entry in payload["layers"] if entry["key"] == key)


def test_the_page_and_its_files_are_served(server):
    status, headers, body = request(server, "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b'<script src="/app.js" defer></script>' in body
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    for path, kind in (("/app.js", "text/javascript"), ("/app.css", "text/css")):
        status, headers, body = request(server, path)
        assert status == 200 and headers["Content-Type"].startswith(kind) and len(body) > 1000
    status, payload = api(server, "/nowhere")
    assert status == 404 and payload["error"] == "no such page: /nowhere"


def test_open_label_undo_and_save_through_the_api(server, tmp_path):
    status, empty = api(server, "/api/state")
    assert status == 200 and empty["state"]["image"] is None and empty["layers"] == []

    png = phantom_png(tmp_path / "case.png").read_bytes()
    status, opened = api(server, "/api/open?name=case.png", data=png)
    assert status == 200 and opened["state"]["image"]["shape"] == [64, 64]
    assert [entry["key"] for entry in opened["layers"]] == [
        "image", "alpha", "uncertainty_map", "lesion_uncertainty", "epistemic", "aleatoric", "user_map"]
    assert len(opened["masks"]) == 2 and len(opened["state"]["proposals"]) == 2
    # The image layer is the uploaded PNG itself; the alpha layer is viridis of the session's alpha.
    np.testing.assert_array_equal(decoded(layer(opened, "image")["url"]), np.asarray(Image.open(tmp_path / "case.png")))
    alpha = server.session.current.maps["alpha"]
    expected = colour_table("viridis")[np.round(alpha * 255).astype(int)]
    np.testing.assert_array_equal(decoded(layer(opened, "alpha")["url"]), expected)

    patch = opened["state"]["proposals"][0]
    status, labelled = api(server, "/api/label", json_body={"patch": 0, "label": "foreground"})
    assert status == 200 and labelled["state"]["num_interactions"] == 1
    assert labelled["version"] == opened["version"] + 1
    rows = slice(patch["top"], patch["top"] + patch["height"])
    cols = slice(patch["left"], patch["left"] + patch["width"])
    before, after = decoded(layer(opened, "alpha")["url"]), decoded(layer(labelled, "alpha")["url"])
    assert np.any(before[rows, cols] != after[rows, cols])
    user_map = decoded(layer(labelled, "user_map")["url"])
    assert np.all(user_map[rows, cols, 3] > 0) and user_map[..., 3].sum() == 200 * patch["height"] * patch["width"]

    stroke = {"stroke": [[50, 50], [50, 55]], "radius": 2, "label": "background"}
    status, stroked = api(server, "/api/label", json_body=stroke)
    assert status == 200 and stroked["state"]["num_interactions"] == 2
    status, undone = api(server, "/api/undo", data=b"")
    assert status == 200 and undone["state"]["num_interactions"] == 1
    assert layer(undone, "alpha")["url"] == layer(labelled, "alpha")["url"]

    status, saved = api(server, "/api/save", data=b"")
    assert status == 200 and saved["saved"]["num_interactions"] == 1
    folder = tmp_path / "saved"
    assert (folder / "case_alpha.nii.gz").is_file() and (folder / "case_user_map.png").is_file()
    assert json.loads((folder / "case_interactions.json").read_text())["interactions"][0]["box"] == [
        patch["top"], patch["left"], patch["height"], patch["width"]]


def test_bad_requests_answer_400_and_the_server_keeps_working(server, tmp_path):
    png = phantom_png(tmp_path / "case.png").read_bytes()
    assert api(server, "/api/open?name=case.png", data=png)[0] == 200
    before = api(server, "/api/state")[1]

    status, payload = api(server, "/api/open?name=scan.png", data=b"GIF89a not a png at all")
    assert status == 400 and payload["error"].startswith("scan.png: not a readable PNG")
    status, payload = api(server, "/api/open?name=report.pdf", data=b"%PDF-1.4")
    assert status == 400 and payload["error"].startswith("report.pdf: unsupported file type")
    status, payload = api(server, "/api/run", json_body={"path": str(tmp_path)})
    assert status == 400 and "not a medmat run" in payload["error"]
    status, payload = api(server, "/api/label", data=b"{not json")
    assert status == 400 and payload["error"].startswith("the request body is not JSON")
    status, payload = api(server, "/api/label", json_body={"patch": 5, "label": "foreground"})
    assert status == 400 and "not proposed" in payload["error"]
    status, payload = api(server, "/api/slice", json_body={"index": "two"})
    assert status == 400 and "whole number" in payload["error"]
    status, payload = api(server, "/api/undo", data=b"")
    assert status == 400 and payload["error"] == "nothing to undo"

    # Requests another site's page could send are refused before they reach the session.
    status, payload = api(server, "/api/undo", data=b"", headers={"X-Medmat": "0"})
    assert status == 403 and "X-Medmat" in payload["error"]
    status, payload = api(server, "/api/state", headers={"Host": "evil.example:80"})
    assert status == 403 and "this machine" in payload["error"]
    assert api(server, "/api/nothing", data=b"")[0] == 404

    status, after = api(server, "/api/state")
    assert status == 200 and after["state"] == before["state"] and after["layers"] == before["layers"]


def test_a_run_without_nig_takes_probes_and_strokes_through_the_fusion(server, tmp_path):
    run = save_run(tmp_path / "medical", MEDICAL_TINY)
    status, payload = api(server, "/api/run", json_body={"path": str(run)})
    assert status == 200 and payload["state"]["model"] == "medical_matting"
    assert payload["state"]["interactive"] and not payload["state"]["nig"]
    png = phantom_png(tmp_path / "case.png", size=32).read_bytes()
    status, opened = api(server, "/api/open?name=case.png", data=png)
    assert status == 200 and [entry["key"] for entry in opened["layers"]] == [
        "image", "alpha", "uncertainty_map", "lesion_uncertainty"]
    assert opened["state"]["probe_levels"] == [0.0, 0.25, 0.5, 0.75, 1.0]
    status, probed = api(server, "/api/probe", json_body={"row": 10, "col": 12, "value": 0.75})
    assert status == 200 and probed["state"]["num_interactions"] == 1
    assert probed["state"]["probes"] == [{"kind": "probe", "row": 10, "col": 12, "value": 0.75}]
    assert abs(server.session.current.maps["alpha"][10, 12] - 0.75) < 0.01
    assert layer(probed, "alpha")["url"] != layer(opened, "alpha")["url"]
    stroke = {"stroke": [[20, 20], [20, 25]], "radius": 2, "label": "background"}
    status, stroked = api(server, "/api/label", json_body=stroke)
    assert status == 200 and stroked["state"]["num_actions"] == 2
    # Bad probes answer 400 with one line and change nothing.
    for body, message in (({"row": 10, "col": 12, "value": 0.3}, "not one of the levels"),
                          ({"row": 99, "col": 12, "value": 0.5}, "lies outside the 32 x 32 image"),
                          ({"row": 10, "value": 0.5}, "a probe needs col")):
        status, payload = api(server, "/api/probe", json_body=body)
        assert status == 400 and message in payload["error"] and "\n" not in payload["error"]
    status, after = api(server, "/api/state")
    assert after["state"] == stroked["state"]
    # Saved actions replay as one interaction.
    saved = api(server, "/api/save", data=b"")[1]["saved"]
    status, replayed = api(server, "/api/replay", json_body={"actions": saved["actions"]})
    assert status == 200 and replayed["state"]["num_actions"] == 4
    status, payload = api(server, "/api/replay", json_body={"actions": "all of them"})
    assert status == 400 and payload["error"] == "actions are a JSON list"
