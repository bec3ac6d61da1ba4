"""Registries: classes register under a name, and configs build them by that name.

One implementation serves models (:mod:`medmat.models.registry`) and losses
(:mod:`medmat.losses.registry`), as segmentation_models_pytorch and timm combine parts by name.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Callable, Mapping
from typing import TypeVar

from medmat.errors import MedmatError

Registered = TypeVar("Registered", bound=type)


class Registry:
    """Name -> class, with a decorator to register, a check of a config section's options against
    the class's constructor (:meth:`check_options`, which config loading calls) and a builder that
    runs the same check.

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

    def check_options(self, name, options: Mapping, section: str | None = None, where=None) -> type:
        """Check that ``options`` configure the class registered as ``name``; return that class.

        Every key of ``options`` must be a keyword of the class's constructor (any key is taken
        when the constructor has ``**kwargs``), and at the top level every argument without a
        default must be given. An option whose value is a mapping with a ``"name"`` (a *nested
        section*: the "nig" wrappers' ``base``) is checked in turn against this registry, keys only,
        since the class that builds it may add arguments of its own (the "nig" model passes its
        base ``in_channels``).

        Args:
            name: the registered name.
            options: the constructor's keyword arguments (without ``name``).
            section: the options' dotted config path for messages ("model", "loss.base"); None
                names the options alone.
            where: the file the options come from, for messages.

        Raises:
            MedmatError: unknown name (the message lists the known ones), an option the
                constructor does not take (the message names it and lists those it takes), or a
                missing required argument; one line.
        """
        return self._check(name, options, section, where, nested=False)

    def _check(self, name, options: Mapping, section: str | None, where, nested: bool) -> type:
        if not isinstance(name, str) or name not in self._classes:
            known = ", ".join(self.names()) or "none"
            given = f" ({section}.name)" if section else ""
            raise MedmatError(f"unknown {self.kind} {name!r}{given}; known {self.plural}: {known}", where)
        cls = self._classes[name]
        prefix = f"{section}." if section else ""
        signature = inspect.signature(cls).parameters.values()
        keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        parameters = {p.name: p for p in signature if p.kind in keyword}
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature)
        for key, value in options.items():
            if key not in parameters and not takes_any:
                takes = ", ".join(parameters) or "no options"
                raise MedmatError(
                    f"unknown option {prefix}{key} for {self.kind} {name!r} (it takes: {takes})", where
                )
            if isinstance(value, Mapping) and "name" in value:
                nested_options = {k: v for k, v in value.items() if k != "name"}
                self._check(value["name"], nested_options, f"{prefix}{key}", where, nested=True)
        if not nested:
            for key, parameter in parameters.items():
                if parameter.default is parameter.empty and key not in options:
                    raise MedmatError(f"{self.kind} {name!r} needs option {prefix}{key}", where)
        return cls

    def build(self, name: str | None, **options):
        """Instantiate the class registered as ``name`` with keyword ``options``.

        Raises:
            MedmatError: as :meth:`check_options` (configs are user input).
        """
        return self.check_options(name, options)(**options)


def import_submodules(package_name: str, package_path) -> None:
    """Import every module of a package (its ``__name__`` and ``__path__``), so that each one's
    ``@register`` decorators run: a new model or criterion is one new file, found by itself."""
    for module in pkgutil.iter_modules(package_path):
        importlib.import_module(f"{package_name}.{module.name}")
