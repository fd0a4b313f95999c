"""Names of the host's network interfaces: what the kernel accepts (at most 15 characters,
IFNAMSIZ - 1) and the short hash tags that make composer's names deterministic and unique."""

from __future__ import annotations

import base64
import hashlib
from typing import Final

from engine.network.errors import NetworkError

__all__ = ["IFNAMSIZ", "check_ifname", "name_tag"]

IFNAMSIZ: Final = 16  # with the terminating NUL


def name_tag(*parts: str, length: int = 8) -> str:
    """`length` lower-case base32 characters (5 bits each) of a hash of `parts`."""
    digest = hashlib.sha256("\0".join(parts).encode()).digest()
    return base64.b32encode(digest).decode().lower()[:length]


def check_ifname(name: str) -> None:
    """Refuse a name the kernel would refuse for a network interface."""
    if (
        not name
        or len(name) >= IFNAMSIZ
        or name in (".", "..")
        or any(c in "/:" or c.isspace() for c in name)
    ):
        raise NetworkError(
            f"{name!r} is not a valid interface name (1 to {IFNAMSIZ - 1} characters, "
            "no '/', ':' or blanks)"
        )
