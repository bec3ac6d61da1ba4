"""The browser app's sub-command: ``serve``.

``medmat serve --run RUN`` loads a trained run and serves a single page on this machine
(127.0.0.1 by default) where a user opens an image, sees its alpha matte, uncertainty maps and
sampled masks, corrects any model's matte with probe clicks (the alpha at a point), brush strokes
or proposed-patch labels (a "nig" model also predicts again with them), and saves the result
(:mod:`medmat.app`).
"""

from __future__ import annotations

from pathlib import Path

import click

from medmat.app.server import make_server
from medmat.app.session import MattingSession
from medmat.cli.options import flip_option, own_size_option

#: Port of ``medmat serve`` unless --port says otherwise.
DEFAULT_PORT = 8765


@click.command("serve")
@click.option("--run", "-r", "runs", required=True, multiple=True,
              help="A run folder (or its checkpoint) from train / crossval fold-<i>; given several times, the runs "
                   "predict as one deep ensemble.")
@click.option("--output", "-o", default="medmat-app-output", show_default=True, type=click.Path(file_okay=False),
              help="Folder where Save writes the alpha, uncertainty maps, user map and interactions.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; the default is reachable from this machine only.")
@click.option("--port", "-p", default=DEFAULT_PORT, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on (0: any free port).")
@click.option("--image", "-i", "image", default=None, type=click.Path(dir_okay=False, exists=True),
              help="An image to open at start (PNG, JPEG, TIFF, BMP, NIfTI, DICOM).")
@click.option("--proposals", default=4, show_default=True, type=click.IntRange(min=1), metavar="K",
              help="Patches proposed at a time (Algorithm 1's N).")
@click.option("--patch-size", default=16, show_default=True, type=click.IntRange(min=1), metavar="P",
              help="Side in pixels of the proposal grid's patches.")
@click.option("--samples", "num_samples", default=8, show_default=True, type=click.IntRange(min=1),
              help="Masks drawn by models that sample (a 'nig' model hands the count to its base).")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the sampled latents.")
@flip_option("the run's eval.flip")
@own_size_option("Predict each image")
@click.option("--verbose", is_flag=True, help="Log every request.")
def serve_command(runs, output, host, port, image, proposals, patch_size, num_samples, seed, flip, own_size, verbose):
    """Serve the browser app: open an image, see the matte and its uncertainty, correct it, save."""
    session = MattingSession.from_run(runs, num_samples=num_samples, num_proposals=proposals,
                                      patch_size=patch_size, seed=seed, own_size=own_size,
                                      flip=flip)
    if image is not None:
        session.open_image(Path(image).read_bytes(), Path(image).name)
    server = make_server(session, output, host, port, quiet=not verbose)
    if host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(f"medmat: warning: listening on {host}: anyone who can reach it can use the app and "
                   f"write into {output}", err=True)
    click.echo(f"medmat app on {server.url} (model {session.model_name!r} from {session.run}); Ctrl+C stops it")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        click.echo("medmat app stopped")
    finally:
        server.server_close()
        session.close()


COMMANDS = [serve_command]
