"""Where composer keeps its state on this host, and the host-wide settings in that state root.

`COMPOSER_ROOT` selects the state root (default /var/lib/composer). Its `config.yaml` holds
settings that are the host's, not a stack's:

    insecure_registries: [registry.lan:5000]   # reached over plain HTTP, as Docker's option
    userns_range: {uid: 100000, gid: 100000, size: 65536}  # ids of `userns_mode: auto`
    address_pools: [{base: 172.20.0.0/14, size: 24}]  # where stack networks' subnets come from
    outbound_nat: false  # true: masquerade what non-internal networks send off the host
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from composer.errors import ComposerError, StackError

__all__ = ["DEFAULT_ROOT", "Settings"]

DEFAULT_ROOT: Final = Path("/var/lib/composer")


@dataclass(frozen=True)
class Settings:
    """The state root and the host settings read from it."""

    root: Path
    insecure_registries: tuple[str, ...] = ()
    # The host ids that containers with `userns_mode: auto` run as: (first uid, first gid,
    # count), their ids 0… mapped there (as Docker's userns-remap, one range for all).
    userns_range: tuple[int, int, int] = (100000, 100000, 65536)
    # Subnets of stack networks are cut from these: (base network, prefix length of each).
    address_pools: tuple[tuple[str, int], ...] = (("172.20.0.0/14", 24), ("10.213.0.0/16", 24))
    # Masquerade what containers of non-internal networks send out of the host (and turn on
    # forwarding); off unless the host's config says so.
    outbound_nat: bool = False

    @property
    def images(self) -> Path:
        return self.root / "images"

    @property
    def containers(self) -> Path:
        return self.root / "containers"

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        root = Path(env.get("COMPOSER_ROOT") or DEFAULT_ROOT)
        if not root.is_absolute():
            raise ComposerError(f"COMPOSER_ROOT must be an absolute path, not {str(root)!r}")
        path = root / "config.yaml"
        try:
            text = path.read_text()
        except FileNotFoundError:
            return cls(root)
        except OSError as exc:
            raise ComposerError(f"cannot read {path}: {exc.strerror}") from exc
        return cls(root, *_read_config(text, path))


def _read_config(
    text: str, path: Path
) -> tuple[tuple[str, ...], tuple[int, int, int], tuple[tuple[str, int], ...], bool]:
    """The settings of a config.yaml; pydantic is imported only when there is one."""
    import ipaddress

    from pydantic import BaseModel, ConfigDict, Field, ValidationError

    from composer.config.problems import problems_from
    from composer.config.yamlio import load_yaml

    class UsernsRange(BaseModel):
        model_config = ConfigDict(extra="forbid", frozen=True)

        uid: int = Field(100000, ge=1, le=2**32 - 2)
        gid: int = Field(100000, ge=1, le=2**32 - 2)
        size: int = Field(65536, ge=1, le=2**32 - 2)

    class AddressPool(BaseModel):
        model_config = ConfigDict(extra="forbid", frozen=True)

        base: ipaddress.IPv4Network
        size: int = Field(24, ge=8, le=30)

    class HostConfig(BaseModel):
        model_config = ConfigDict(extra="forbid", frozen=True)

        insecure_registries: list[str] = []
        userns_range: UsernsRange = Field(default_factory=lambda: UsernsRange())
        address_pools: list[AddressPool] | None = None
        outbound_nat: bool = Field(False, strict=True)  # true or false, not "yes" or 1

    raw = load_yaml(text, str(path))
    try:
        config = HostConfig.model_validate(raw or {})
    except ValidationError as exc:
        raise StackError(problems_from(exc, HostConfig, raw)) from exc
    ids = config.userns_range
    pools = (
        tuple((str(p.base), p.size) for p in config.address_pools)
        if config.address_pools
        else Settings.address_pools
    )
    return (
        tuple(config.insecure_registries),
        (ids.uid, ids.gid, ids.size),
        pools,
        config.outbound_nat,
    )
