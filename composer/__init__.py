"""composer: a daemonless, compose-like orchestrator that is its own container engine."""

__version__ = "0.1.0"

__all__ = ["__version__"]
