"""The error the networking mechanism raises: it names the bridge, link, namespace or address
it was working on and what the kernel or the allocator refused."""

from __future__ import annotations

from engine.errors import EngineError

__all__ = ["NetworkError"]


class NetworkError(EngineError):
    """A bridge, veth pair, address or namespace could not be made, found or allocated."""
