"""Registries: classes register under a name, and configs build them by that name.

One implementation serves models (:mod:`medmat.models.registry`) and losses
(:mod:`medmat.losses.registry`), as segmentation_models_pytorch and timm combine parts by name.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TypeVar

from medmat.errors import MedmatError

Registered = TypeVar("Registered", bound=type)


class Registry:
    """Name -> class, with a decorator to register and a builder that checks options.

    Args:
        kind: what is registered, for messages ("model", "loss").
        plural: its plural ("models", "losses").
    """

    def __init__(self, kind: str, plural: str):
        self.kind, self.plural = kind, plural
        self._classes: dict[str, type] = {}

    def register(self, name: str) -> Callable[[Registered], Registered]:
        """Class decorator registering the class under ``name`` (unique)."""

        def register(cls: Registered) -> Registered:
            known = self._classes.get(name)
            if known is not None and known is not cls:
                raise ValueError(f"{self.kind} name {name!r} is already registered by {known.__qualname__}")
            self._classes[name] = cls
            return cls

        return register

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._classes)

    def build(self, name: str | None, **options):
        """Instantiate the class registered as ``name`` with keyword ``options``.

        Raises:
            MedmatError: unknown name (the message lists the known ones) or an option the
                constructor does not take (configs are user input).
        """
        if name not in self._classes:
            known = ", ".join(self.names()) or "none"
            raise MedmatError(f"unknown {self.kind} {name!r}; known {self.plural}: {known}")
        cls = self._classes[name]
        try:
            inspect.signature(cls).bind(**options)
        except TypeError as error:
            raise MedmatError(f"{self.kind} {name!r}: {error}") from None
        return cls(**options)
