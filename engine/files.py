"""Files replaced whole: written beside their place under a unique name, then renamed over
it, so a reader sees the old content or the new, never a part."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

__all__ = ["write_atomic"]


def write_atomic(path: Path, data: bytes, durable: bool = False) -> None:
    """Replace `path` by a file holding `data`; `durable`: on disk (fsync) before the rename,
    so a crash leaves the old file or the whole new one."""
    tmp = path.with_name(f".tmp-{secrets.token_hex(6)}-{path.name}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
