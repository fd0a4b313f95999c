"""composer: a daemonless, compose-like orchestrator that is its own container engine."""

import sys
import types

__version__ = "0.1.0"

__all__ = ["__version__"]


def _no_pydantic_plugins() -> None:
    """pydantic looks for plugins (entry points, read through importlib.metadata) when it
    makes its first validator: importing importlib.metadata alone took 60-80 ms of every
    command that loads a stack, and composer runs no pydantic plugin. Its loader is replaced,
    before pydantic is imported, by one that finds none — what PYDANTIC_DISABLE_PLUGINS=__all__
    answers, a variable pydantic reads only after that import. A process that imported
    pydantic's loader first keeps it."""
    loader = types.ModuleType("pydantic.plugin._loader", "composer: no pydantic plugins")
    loader.get_plugins = tuple  # type: ignore[attr-defined]  # no plugins: an empty iterable
    sys.modules.setdefault(loader.__name__, loader)


_no_pydantic_plugins()
