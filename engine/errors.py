"""The errors the engine raises: each names the thing it was working on and what went wrong."""

from __future__ import annotations

__all__ = ["EngineError", "ImageError", "LayerError", "MountError", "RegistryError"]


class EngineError(Exception):
    """Base of every error of the engine; a caller shows its message to the user as it is."""


class ImageError(EngineError):
    """An image is missing, malformed, or cannot be stored."""


class LayerError(ImageError):
    """A layer archive is malformed, truncated, does not match its digest, or is refused."""


class RegistryError(ImageError):
    """A registry refused a request, could not be reached, or sent something invalid."""


class MountError(EngineError):
    """A root filesystem or bind mount could not be made or removed."""
