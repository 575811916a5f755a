"""Kinds by name: every dataset kind, backbone kind and proposer kind registers here with everything
the rest of the pipeline needs from it (its schema fragment, its preflight checks, what it fetches,
what it builds). Adding a kind touches its own module and its registration, nothing else.

A plug-in is any importable module that registers kinds (``@BACKBONES.register`` on a kind class);
list it under ``plugins:`` in the config. The workflow imports it when it starts and passes the list
to every job through the environment (``OMAMA_PLUGINS``), so scripts see the same kinds. Light: no
numpy or torch here; kind modules keep their heavy imports inside their methods.
"""

from __future__ import annotations

import importlib
import os

PLUGINS = "OMAMA_PLUGINS"  # comma-separated modules imported before the first lookup, in every process
# The built-in kinds, imported on the first lookup (light modules: heavy imports stay in their methods).
BUILTIN = ("omama.data.kinds", "omama.features.kinds", "omama.proposals.kinds")
_loaded: set[str] = set()


def use_plugins(modules: list[str]) -> None:
    """Import ``modules`` now and in every job this process starts (the environment carries them)."""
    os.environ[PLUGINS] = ",".join(modules)
    load()


def load() -> None:
    """Import the built-in kind modules and the plug-ins named in ``OMAMA_PLUGINS`` (once each)."""
    for module in (*BUILTIN, *filter(None, os.environ.get(PLUGINS, "").split(","))):
        if module not in _loaded:
            try:
                importlib.import_module(module)
            except ImportError as e:
                raise ImportError(f"cannot import the plug-in module {module!r} (config plugins:, {PLUGINS}): {e}") from e
            _loaded.add(module)


class Registry:
    """The kinds of one role ("dataset", "backbone", "proposer"), by name."""

    def __init__(self, role: str):
        self.role = role
        self._kinds: dict[str, object] = {}

    def register(self, cls):
        """Class decorator: register an instance of ``cls`` under ``cls.name``."""
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.role} kind needs a name: {cls!r}")
        if name in self._kinds and type(self._kinds[name]) is not cls:
            raise ValueError(f"{self.role} kind {name!r} is registered twice ({type(self._kinds[name])!r} and {cls!r})")
        self._kinds[name] = cls()
        return cls

    def get(self, name: str, where: str = ""):
        """The kind registered as ``name``; an error naming the known kinds (and ``where`` it was asked for)."""
        load()
        if name not in self._kinds:
            at = f" at {where}" if where else ""
            raise ValueError(f"unknown {self.role} kind {name!r}{at}; known: {self.names()} (plug-ins: config plugins:)")
        return self._kinds[name]

    def names(self) -> list[str]:
        load()
        return sorted(self._kinds)

    def items(self):
        load()
        return sorted(self._kinds.items())


DATASETS = Registry("dataset")
BACKBONES = Registry("backbone")
PROPOSERS = Registry("proposer")
