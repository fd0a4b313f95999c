"""A container's log: lines move from its raw output into a timestamped, rotated log; nothing
is lost, whoever reads or does not."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

from engine.container.logs import LogReader, pump, read_log


def append(directory: Path, stream: str, data: bytes) -> None:
    fd = os.open(directory / stream, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def test_complete_lines_move_to_the_log_with_their_stream(tmp_path: Path) -> None:
    append(tmp_path, "stdout", b"one\ntwo\npart")
    append(tmp_path, "stderr", b"oops\n")
    assert pump(tmp_path) == 3
    entries = [json.loads(line) for line in (tmp_path / "container.log").read_text().splitlines()]
    assert [(e["stream"], e["log"]) for e in entries] == [("stdout", "one\n"), ("stdout", "two\n"), ("stderr", "oops\n")]
    assert all(e["time"].endswith("Z") for e in entries)
    append(tmp_path, "stdout", b"ial\n")
    assert pump(tmp_path) == 1
    assert [line.text for line in read_log(tmp_path)][-1] == "partial\n"


def test_a_last_line_without_newline_is_logged_when_the_container_ended(tmp_path: Path) -> None:
    append(tmp_path, "stdout", b"no newline")
    assert pump(tmp_path) == 0
    assert pump(tmp_path, final=True) == 1


def test_what_was_not_pumped_yet_is_still_read(tmp_path: Path) -> None:
    append(tmp_path, "stdout", b"a\n")
    pump(tmp_path)
    append(tmp_path, "stdout", b"b\n")
    assert [line.text for line in read_log(tmp_path)] == ["a\n", "b\n"]


def test_pumped_output_frees_its_disk_blocks(tmp_path: Path) -> None:
    append(tmp_path, "stdout", b"x" * 99 + b"\n" * 1 + (b"y" * 1023 + b"\n") * 1024)
    before = os.stat(tmp_path / "stdout").st_blocks
    pump(tmp_path)
    after = os.stat(tmp_path / "stdout")
    assert after.st_size == 100 + 1024 * 1024  # the size stays: the writer appends at the end
    assert after.st_blocks < before // 4


def test_the_log_rotates_at_its_size(tmp_path: Path) -> None:
    for n in range(5):
        append(tmp_path, "stdout", (f"{n}" * 999 + "\n").encode() * 10)
        pump(tmp_path, max_size=8000, keep=2)
    assert sorted(p.name for p in tmp_path.glob("container.log*")) == ["container.log.1", "container.log.2"]
    assert len(list(read_log(tmp_path, keep=2))) == 20


def test_nothing_is_lost_while_the_container_writes_during_pumps(tmp_path: Path) -> None:
    def writer() -> None:
        fd = os.open(tmp_path / "stdout", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        for n in range(20000):
            os.write(fd, f"line {n}\n".encode())
        os.close(fd)

    thread = threading.Thread(target=writer)
    thread.start()
    while thread.is_alive():
        pump(tmp_path)
    thread.join()
    pump(tmp_path)
    texts = [line.text for line in read_log(tmp_path)]
    assert texts == [f"line {n}\n" for n in range(20000)]


def test_a_follower_sees_each_line_once_while_pumps_move_and_rotate_them(tmp_path: Path) -> None:
    done = threading.Event()

    def writer() -> None:
        fd = os.open(tmp_path / "stdout", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        for n in range(20000):
            os.write(fd, f"line {n}\n".encode())
            if n % 500 == 0:
                time.sleep(0.002)  # room for pumps (and rotations) between writes
        os.close(fd)

    def pumper() -> None:
        while not done.is_set():
            pump(tmp_path, max_size=20000, keep=1000)
        pump(tmp_path, max_size=20000, keep=1000)

    threads = [threading.Thread(target=writer), threading.Thread(target=pumper)]
    for thread in threads:
        thread.start()
    seen: list[str] = []
    with LogReader(tmp_path, keep=1000) as reader:
        while threads[0].is_alive():
            seen += [line.text for line in reader.read()]
        done.set()
        threads[1].join()
        seen += [line.text for line in reader.read(final=True)]
    threads[0].join()
    assert seen == [f"line {n}\n" for n in range(20000)]
    assert len(list(tmp_path.glob("container.log.*"))) >= 2  # it rotated meanwhile


def test_a_follower_reads_the_raw_files_when_nothing_pumps(tmp_path: Path) -> None:
    with LogReader(tmp_path) as reader:
        assert reader.read() == []
        append(tmp_path, "stdout", b"out\npart")
        append(tmp_path, "stderr", b"err\n")
        assert [(line.stream, line.text) for line in reader.read()] == [("stdout", "out\n"), ("stderr", "err\n")]
        assert reader.read() == []
        pump(tmp_path)  # moves what was shown: not shown again
        assert reader.read() == []
        assert [line.text for line in reader.read(final=True)] == ["part"]
