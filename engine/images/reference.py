"""Image references as Docker reads them: `busybox` is `docker.io/library/busybox:latest`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from engine.errors import ImageError

__all__ = ["DEFAULT_DOMAIN", "Reference", "parse_reference"]

DEFAULT_DOMAIN: Final = "docker.io"
_LEGACY_DOMAINS: Final = frozenset({"index.docker.io", "registry-1.docker.io"})
_COMPONENT: Final = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG: Final = re.compile(r"[\w][\w.-]{0,127}")
_DIGEST: Final = re.compile(r"sha256:[0-9a-f]{64}")
_DOMAIN: Final = re.compile(
    r"(?:localhost|[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)*|\[[0-9a-fA-F:]+\])"
    r"(?::[0-9]+)?"
)


@dataclass(frozen=True)
class Reference:
    """A normalised image reference: registry domain, repository path, tag and/or digest."""

    domain: str
    path: str
    tag: str | None
    digest: str | None

    @property
    def repository(self) -> str:
        """`docker.io/library/busybox`."""
        return f"{self.domain}/{self.path}"

    @property
    def registry_host(self) -> str:
        """Where the registry answers: Docker Hub's API is not on docker.io itself."""
        return "registry-1.docker.io" if self.domain == DEFAULT_DOMAIN else self.domain

    def familiar(self) -> str:
        """The short form Docker shows: `busybox:latest`, `me/app:1`, `127.0.0.1:5000/x:y`."""
        name = self.repository
        if self.domain == DEFAULT_DOMAIN:
            name = self.path.removeprefix("library/")
        return name + self._suffix()

    def with_tag(self, tag: str) -> Reference:
        return Reference(self.domain, self.path, tag, None)

    def with_digest(self, digest: str) -> Reference:
        return Reference(self.domain, self.path, None, digest)

    def _suffix(self) -> str:
        return (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")

    def __str__(self) -> str:
        return self.repository + self._suffix()


def parse_reference(text: str) -> Reference:
    """Parse and normalise `text` as Docker does; raise ImageError naming what is wrong."""
    rest, digest = text, None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if not _DIGEST.fullmatch(digest):
            raise ImageError(f"invalid image reference {text!r}: {digest!r} is not a sha256 digest")
    tag = None
    colon = rest.rfind(":")
    if colon > rest.rfind("/"):
        rest, tag = rest[:colon], rest[colon + 1 :]
        if not _TAG.fullmatch(tag):
            raise ImageError(f"invalid image reference {text!r}: {tag!r} is not a valid tag")
    first, sep, remainder = rest.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        if not _DOMAIN.fullmatch(first):
            raise ImageError(f"invalid image reference {text!r}: bad registry {first!r}")
        domain, path = first, remainder
    else:
        domain, path = DEFAULT_DOMAIN, rest
    if domain in _LEGACY_DOMAINS:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = f"library/{path}"
    for component in path.split("/"):
        if not _COMPONENT.fullmatch(component):
            hint = " (repository names are lowercase)" if component.lower() != component else ""
            raise ImageError(f"invalid image reference {text!r}: bad name {path!r}{hint}")
    if len(domain) + len(path) + 1 > 255:
        raise ImageError(f"invalid image reference {text!r}: the name is over 255 characters")
    if tag is None and digest is None:
        tag = "latest"
    return Reference(domain, path, tag, digest)
