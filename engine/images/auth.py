"""Registry credentials and challenges: `~/.docker/config.json` logins, WWW-Authenticate."""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from engine.errors import RegistryError

__all__ = ["Challenge", "Credentials", "docker_credentials", "parse_challenge"]

_PARAM = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))')
_DOCKER_HUB_KEYS = ("https://index.docker.io/v1/", "index.docker.io", "docker.io")


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str


@dataclass(frozen=True)
class Challenge:
    """What a registry's 401 asks for: `Basic`, or `Bearer` with a token realm and its params."""

    scheme: str
    params: dict[str, str]


def parse_challenge(header: str) -> Challenge:
    scheme, _, rest = header.strip().partition(" ")
    params = {
        m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
        for m in _PARAM.finditer(rest)
    }
    return Challenge(scheme.lower(), params)


def _config_path() -> Path:
    directory = os.environ.get("DOCKER_CONFIG")
    return Path(directory) / "config.json" if directory else Path.home() / ".docker/config.json"


def docker_credentials(domain: str, config: Path | None = None) -> Credentials | None:
    """The login `docker login DOMAIN` saved, if any (only inline `auth` entries: credential
    helpers are programs, and the engine runs none)."""
    path = config or _config_path()
    try:
        doc = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise RegistryError(f"cannot read registry logins from {path}: {exc}") from exc
    auths = doc.get("auths") if isinstance(doc, dict) else None
    if not isinstance(auths, dict):
        return None
    keys = _DOCKER_HUB_KEYS if domain == "docker.io" else (domain,)
    for key, entry in auths.items():
        host = key.removeprefix("https://").removeprefix("http://").rstrip("/")
        if (key in keys or host in keys) and isinstance(entry, dict) and entry.get("auth"):
            try:
                user, sep, password = base64.b64decode(entry["auth"]).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError) as exc:
                raise RegistryError(f"{path}: the login for {key} is not valid base64") from exc
            if sep:
                return Credentials(user, password)
    return None
