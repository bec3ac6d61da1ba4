"""The browser app of medmat: ``medmat serve --run RUN``.

- :mod:`~medmat.app.session`: one opened image's interactive matting state (prediction, proposed
  patches, user map, NIG summation history, undo, save), without any HTTP;
- :mod:`~medmat.app.server`: the local web server, its JSON API and the single page in
  ``medmat/app/static/``.
"""

from medmat.app.session import LABELS, MattingSession, Step, stroke_mask

__all__ = ["LABELS", "MattingSession", "Step", "stroke_mask"]
