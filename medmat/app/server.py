"""The local web server of the browser app: a single page and a JSON API over one :class:`MattingSession`.

Built on the standard library's :class:`http.server.ThreadingHTTPServer`; one lock serialises
the requests that read or change the session (one user, one model). The page
(``medmat/app/static/``: index.html, app.js, app.css; no build step, nothing from the network)
talks to:

=====================  ==========================================================================
``GET  /api/state``    the state (below)
``POST /api/open``     body: the file's bytes; query ``name=<file name>`` and optional ``slice=<k>``
``POST /api/slice``    ``{"index": k}``: another slice of the open volume
``POST /api/run``      ``{"path": "<run folder or checkpoint>"}``: another model
``POST /api/label``    ``{"label": "foreground"|"background"|"transition", "patch": rank}`` or
                       ``{"label": ..., "stroke": [[row, col], ...], "radius": r}``
``POST /api/probe``    ``{"row": r, "col": c, "value": 0|0.25|0.5|0.75|1}``: the alpha at a pixel
``POST /api/replay``   ``{"actions": [...]}``: saved actions applied again (one interaction)
``POST /api/undo``     drop the last interaction
``POST /api/save``     write the outputs into the server's output folder; adds ``"saved"``
=====================  ==========================================================================

Every answer is JSON. A state is ``{"version", "state": MattingSession.summary(), "layers":
[{"key", "title", "url", "range"}], "masks": [url]}``: pictures travel as PNG data URLs,
rendered here with matplotlib colour maps (alpha: viridis on [0, 1]; entropies: magma on [0, 1]
bit; epistemic and aleatoric: magma on [0, the maximum of the prediction without interaction],
so answering shows the uncertainty falling). A problem caused by the request (a bad upload, a run
that is not a medmat run, a patch that is not proposed, malformed JSON) answers 400 with
``{"error": "<one line>"}``; anything else 500 with the error's name; the server keeps running.
POST requests must carry the header ``X-Medmat: 1``, which a page of another site cannot send
without the server's consent, and the Host must be this machine's when the server listens on it.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import io
import ipaddress
import json
import math
import sys
import threading
import traceback
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from urllib.parse import parse_qs, urlsplit

import numpy as np
from PIL import Image

from medmat.app.session import MattingSession
from medmat.errors import MedmatError
from medmat.models.contract import ENTROPY_OUTPUTS

#: Files of the page, served from the package's ``static`` folder, and their content types.
STATIC_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/app.css": ("app.css", "text/css; charset=utf-8"),
}
#: Largest upload accepted, in bytes (a CT volume of 512 x 512 x 1000 int16 voxels is 500 MiB).
MAX_UPLOAD_BYTES = 1 << 29
#: Largest JSON request body (a long brush stroke is a few hundred kB).
MAX_JSON_BYTES = 1 << 22
#: The page's policy: its own scripts and styles only, pictures from data URLs.
CONTENT_SECURITY_POLICY = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'"
#: Header every POST must carry (see the module docstring).
POST_HEADER = "X-Medmat"
#: Colours of the user map overlay (RGBA): the three answers; unknown stays transparent.
USER_MAP_COLOURS = {1.0: (230, 57, 70, 200), -1.0: (69, 123, 230, 200), 0.5: (255, 200, 40, 200)}
#: Map layers of the page, in order: key in the step's maps, title, colour map.
MAP_LAYERS = (
    ("alpha", "Alpha matte", "viridis"),
    ("uncertainty_map", "Prob. U-Net entropy (bits)", "magma"),
    ("lesion_uncertainty", "Lesion entropy (bits)", "magma"),
    ("epistemic", "Epistemic Var[μ]", "magma"),
    ("aleatoric", "Aleatoric E[σ²]", "magma"),
)


# --------------------------------------------------------------------------------------------
# Pictures
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def colour_table(name: str) -> np.ndarray:
    """The 256-entry RGB table of a matplotlib colour map: uint8 (256, 3)."""
    # Imported on first use: matplotlib costs a second of the server's start-up.
    import matplotlib

    return np.round(matplotlib.colormaps[name](np.linspace(0.0, 1.0, 256))[:, :3] * 255).astype(np.uint8)


def png_data_url(pixels: np.ndarray) -> str:
    """A ``data:image/png;base64,...`` URL of uint8 (H, W) grey, (H, W, 3) RGB or (H, W, 4) RGBA pixels."""
    buffer = io.BytesIO()
    # Level 1: these pictures are re-sent after every click, where encoding time counts more than bytes.
    Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def image_pixels(image: np.ndarray) -> np.ndarray:
    """A (C, H, W) image in [0, 1] (C = 1 or 3) as uint8 (H, W) grey or (H, W, 3) RGB."""
    pixels = np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)
    return pixels[0] if pixels.shape[0] == 1 else np.moveaxis(pixels, 0, -1)


def coloured_pixels(values: np.ndarray, colour_map: str, top: float) -> np.ndarray:
    """(H, W) values on [0, ``top``] through a colour map: uint8 (H, W, 3) (outside values are clipped)."""
    scaled = np.clip(np.nan_to_num(values / top if top > 0 else values, posinf=1.0), 0.0, 1.0)
    return colour_table(colour_map)[np.round(scaled * 255).astype(np.intp)]


def user_map_pixels(user_map: np.ndarray) -> np.ndarray:
    """The user map as uint8 (H, W, 4) RGBA: :data:`USER_MAP_COLOURS`, transparent where unknown."""
    pixels = np.zeros((*user_map.shape, 4), dtype=np.uint8)
    for value, colour in USER_MAP_COLOURS.items():
        pixels[user_map == value] = colour
    return pixels


def state_payload(session: MattingSession, version: int) -> dict:
    """The JSON answer describing ``session``: its summary, its pictures as data URLs, ``version``."""
    payload = {"version": version, "state": session.summary(), "layers": [], "masks": []}
    if not session.history:
        return payload
    step, first = session.current, session.history[0]
    layers = [{"key": "image", "title": "Image", "url": png_data_url(image_pixels(session.opened.source)),
               "range": None}]
    for key, title, colour_map in MAP_LAYERS:
        if key not in step.maps:
            continue
        values = step.maps[key] / math.log(2) if key in ENTROPY_OUTPUTS else step.maps[key]
        top = 1.0 if key == "alpha" or key in ENTROPY_OUTPUTS else float(np.max(first.maps[key]))
        layers.append({"key": key, "title": title, "url": png_data_url(coloured_pixels(values, colour_map, top)),
                       "range": [0.0, top]})
    if session.nig:
        layers.append({"key": "user_map", "title": "User map", "url": png_data_url(user_map_pixels(step.user_map)),
                       "range": None})
    payload["layers"] = layers
    masks = step.maps.get("sample_masks", ())
    payload["masks"] = [png_data_url(np.where(mask > 0.5, np.uint8(255), np.uint8(0))) for mask in masks]
    return payload


# --------------------------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------------------------


class RequestError(Exception):
    """A request the server refuses before it reaches the session: its HTTP status and message."""

    def __init__(self, status: HTTPStatus, message: str):
        super().__init__(message)
        self.status = status


def json_object(body: bytes) -> dict:
    """The JSON object of a request body (an empty body is ``{}``); a MedmatError when it is not one."""
    if not body:
        return {}
    try:
        value = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise MedmatError(f"the request body is not JSON ({error})") from None
    if not isinstance(value, dict):
        raise MedmatError("the request body must be a JSON object")
    return value


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class AppServer(ThreadingHTTPServer):
    """The app's HTTP server: one :class:`MattingSession`, its lock, the output folder, a state version.

    Args:
        address: (host, port); port 0 picks a free one (see ``server_address``).
        session: the session every request works on.
        output: folder of ``POST /api/save``.
        quiet: log only errors (True) or every request too.
    """

    daemon_threads = True

    def __init__(self, address: tuple[str, int], session: MattingSession, output: str, quiet: bool = True):
        super().__init__(address, AppHandler)
        self.session, self.output, self.quiet = session, str(output), quiet
        self.lock = threading.Lock()
        self.version = 0

    def handle_error(self, request, client_address) -> None:
        # A client that hung up (a closed tab, a cancelled request) is not worth a traceback.
        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            return
        super().handle_error(request, client_address)

    @property
    def url(self) -> str:
        """``http://host:port/`` of the page."""
        host, port = self.server_address[:2]
        return f"http://{'[' + host + ']' if ':' in host else host}:{port}/"


class AppHandler(BaseHTTPRequestHandler):
    """Routes of the page and the JSON API (module docstring)."""

    server: AppServer
    server_version = "medmat-app"
    protocol_version = "HTTP/1.1"

    # The routes that change the session: path -> method name.
    POST_ROUTES = {
        "/api/open": "open_image",
        "/api/slice": "select_slice",
        "/api/run": "load_run",
        "/api/label": "label",
        "/api/probe": "probe",
        "/api/replay": "replay",
        "/api/undo": "undo",
        "/api/save": "save",
    }

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's signature
        if not self.server.quiet:
            super().log_message(format, *args)

    # ---- answers ------------------------------------------------------------------------

    def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        if content_type.startswith("text/html"):
            self.send_header("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        self.end_headers()
        self.wfile.write(body)

    def _send_json(self, status: HTTPStatus, value: dict) -> None:
        self._send(status, json.dumps(value).encode("utf-8"), "application/json; charset=utf-8")

    def _guarded(self, answer) -> None:
        """Run ``answer() -> dict`` and send it; turn every failure into a JSON error, never a crash."""
        try:
            self._check_host()
            self._send_json(HTTPStatus.OK, answer())
        except RequestError as error:
            self.close_connection = True  # the body may be unread
            self._send_json(error.status, {"error": str(error)})
        except MedmatError as error:
            self._send_json(HTTPStatus.BAD_REQUEST, {"error": str(error)})
        except Exception as error:  # noqa: BLE001 - a bug must not stop the server: answer 500 and log it
            traceback.print_exc(file=sys.stderr)
            self.close_connection = True
            self._send_json(HTTPStatus.INTERNAL_SERVER_ERROR,
                            {"error": f"internal error ({type(error).__name__}: {error}); see the server's log"})

    def _check_host(self) -> None:
        """A server listening on this machine only answers requests addressed to this machine (DNS rebinding)."""
        if not _is_loopback(self.server.server_address[0]):
            return
        host = urlsplit("//" + (self.headers.get("Host") or "")).hostname or ""
        if not _is_loopback(host):
            raise RequestError(HTTPStatus.FORBIDDEN, f"requests must be addressed to this machine, not {host!r}")

    def _body(self, limit: int) -> bytes:
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            raise RequestError(HTTPStatus.LENGTH_REQUIRED, "the request needs a Content-Length")
        if int(length) > limit:
            raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                               f"the request body has {int(length)} bytes; at most {limit} are accepted")
        return self.rfile.read(int(length))

    # ---- GET ----------------------------------------------------------------------------

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        path = urlsplit(self.path).path
        if path in STATIC_FILES:
            name, content_type = STATIC_FILES[path]
            try:
                self._check_host()
            except RequestError as error:
                self._send_json(error.status, {"error": str(error)})
                return
            self._send(HTTPStatus.OK, resources.files("medmat.app").joinpath("static", name).read_bytes(), content_type)
        elif path == "/api/state":
            self._guarded(self._state)
        elif path == "/favicon.ico":
            self.send_response(HTTPStatus.NO_CONTENT)
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self._send_json(HTTPStatus.NOT_FOUND, {"error": f"no such page: {path}"})

    def _state(self) -> dict:
        with self.server.lock:
            return state_payload(self.server.session, self.server.version)

    # ---- POST ---------------------------------------------------------------------------

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        route = self.POST_ROUTES.get(urlsplit(self.path).path)
        if route is None:
            self.close_connection = True
            self._send_json(HTTPStatus.NOT_FOUND, {"error": f"no such API: {urlsplit(self.path).path}"})
            return
        self._guarded(lambda: self._change(getattr(self, route)))

    def _change(self, action) -> dict:
        """Check the request, run ``action(session) -> extra dict`` under the lock, answer the new state."""
        if self.headers.get(POST_HEADER) != "1":
            raise RequestError(HTTPStatus.FORBIDDEN, f"API requests need the header {POST_HEADER}: 1")
        limit = MAX_UPLOAD_BYTES if action.__name__ == "open_image" else MAX_JSON_BYTES
        body = self._body(limit)
        with self.server.lock:
            extra = action(self.server.session, body)
            self.server.version += 1
            return {**state_payload(self.server.session, self.server.version), **extra}

    def open_image(self, session: MattingSession, body: bytes) -> dict:
        query = parse_qs(urlsplit(self.path).query)
        name = query.get("name", [""])[0]
        slice_text = query.get("slice", [""])[0]
        if slice_text and not slice_text.lstrip("-").isdigit():
            raise MedmatError(f"slice must be a whole number, got {slice_text!r}")
        session.open_image(body, name, int(slice_text) if slice_text else None)
        return {}

    def select_slice(self, session: MattingSession, body: bytes) -> dict:
        index = json_object(body).get("index")
        if isinstance(index, bool) or not isinstance(index, int):
            raise MedmatError(f"slice index must be a whole number, got {index!r}")
        session.select_slice(index)
        return {}

    def load_run(self, session: MattingSession, body: bytes) -> dict:
        path = json_object(body).get("path")
        if not isinstance(path, str) or not path.strip():
            raise MedmatError("give the run folder (or checkpoint) to load")
        session.load_run(path.strip())
        return {}

    def label(self, session: MattingSession, body: bytes) -> dict:
        request = json_object(body)
        label = request.get("label")
        if "patch" in request:
            session.label_patch(request["patch"], label)
        elif "stroke" in request:
            session.paint_stroke(request["stroke"], request.get("radius", 4), label)
        else:
            raise MedmatError("a label needs a proposed 'patch' (its rank) or a brush 'stroke'")
        return {}

    def probe(self, session: MattingSession, body: bytes) -> dict:
        request = json_object(body)
        missing = [key for key in ("row", "col", "value") if key not in request]
        if missing:
            raise MedmatError(f"a probe needs {', '.join(missing)}")
        session.probe(request["row"], request["col"], request["value"])
        return {}

    def replay(self, session: MattingSession, body: bytes) -> dict:
        session.replay(json_object(body).get("actions"))
        return {}

    def undo(self, session: MattingSession, body: bytes) -> dict:
        session.undo()
        return {}

    def save(self, session: MattingSession, body: bytes) -> dict:
        record = session.save(self.server.output)
        return {"saved": {"folder": self.server.output, **record}}


def make_server(session: MattingSession, output: str, host: str = "127.0.0.1", port: int = 0,
                quiet: bool = True) -> AppServer:
    """A bound, not yet serving :class:`AppServer` (call ``serve_forever()``; port 0 = a free port).

    Raises:
        MedmatError: the address cannot be bound (in use, not this machine's).
    """
    try:
        return AppServer((host, port), session, output, quiet)
    except OSError as error:
        raise MedmatError(f"cannot listen on {host}:{port} ({error.strerror or error})") from None


@contextlib.contextmanager
def serve_in_thread(session: MattingSession, output: str, host: str = "127.0.0.1", port: int = 0):
    """Serve ``session`` from a background thread for the ``with`` block; yields the :class:`AppServer`
    (its ``server_address`` holds the port). On exit the server stops and the session is closed."""
    server = make_server(session, output, host=host, port=port)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        session.close()
