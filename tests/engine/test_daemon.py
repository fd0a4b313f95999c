"""Daemons of a state root: one per lock file, found by the pid in it."""

from __future__ import annotations

import os
from pathlib import Path

from engine.daemon import claim, daemon_pid, running_pid


def test_a_daemon_that_claims_its_lock_is_no_longer_starting(tmp_path: Path) -> None:
    lock = tmp_path / "d.lock"
    started = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19]
    (tmp_path / "d.lock.starting").write_text(f"{os.getpid()} {started}\n")  # as start_daemon
    assert daemon_pid(lock) == os.getpid()  # started, still loading
    fd = claim(lock)
    assert fd is not None
    try:
        assert running_pid(lock) == os.getpid()
        assert not (tmp_path / "d.lock.starting").exists()
    finally:
        os.close(fd)
    # Once it lets the lock go (a fork server retiring), it passes for neither.
    assert daemon_pid(lock) is None
