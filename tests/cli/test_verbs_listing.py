"""`composer ls` (the stacks on this host) and `composer images` (what a stack's containers
run)."""

from __future__ import annotations

import json

import pytest

from composer.cli.main import main
from composer.images import open_store
from tests.cli.conftest import Cli

pytestmark = pytest.mark.kernel

STACK = """
services:
  a:
    image: busybox:test
    command: ["sleep", "300"]
    scale: 2
  b:
    image: busybox:test
    command: ["sleep", "300"]
"""


def ls(cli: Cli, *args: str) -> tuple[int, str]:
    cli.capsys.readouterr()
    code = main(["ls", *args])
    return code, cli.capsys.readouterr().out


def test_ls_lists_running_stacks_with_a_state_summary_and_their_files(cli: Cli) -> None:
    one, two = cli.up(STACK), cli.up(STACK)
    cli(two, "stop", "-t", "0")
    code, out = ls(cli)
    header, *rows = out.splitlines()
    assert code == 0 and header.split() == ["NAME", "STATUS", "CONFIG", "FILES"]
    assert [row.split() for row in rows] == [[one.project.name, "running(3)", str(one.files[0])]]


def test_ls_all_counts_every_state(cli: Cli) -> None:
    one, two = cli.up(STACK), cli.up(STACK)
    cli(one, "stop", "-t", "0", "b")
    cli(two, "stop", "-t", "0")
    rows = json.loads(ls(cli, "-a", "--format", "json")[1])
    assert sorted(rows, key=lambda r: r["Name"]) == sorted([
        {"Name": one.project.name, "Status": "exited(1), running(2)", "ConfigFiles": str(one.files[0])},
        {"Name": two.project.name, "Status": "exited(3)", "ConfigFiles": str(two.files[0])},
    ], key=lambda r: r["Name"])
    assert sorted(ls(cli, "-a", "-q")[1].split()) == sorted([one.project.name, two.project.name])


def test_images_lists_the_image_of_each_container(cli: Cli) -> None:
    stack = cli.up(STACK)
    image = open_store(cli.stacks.settings).get("busybox:test")
    code, out, _ = cli(stack, "images")
    header, *rows = out.splitlines()
    assert code == 0 and header.split() == ["CONTAINER", "REPOSITORY", "TAG", "IMAGE", "ID", "SIZE"]
    p = stack.project.name
    assert [row.split()[:4] for row in rows] == [[f"{p}-{c}", "busybox", "test", image.short_id] for c in ("a-1", "a-2", "b-1")]


def test_images_json_and_quiet(cli: Cli) -> None:
    stack = cli.up(STACK)
    image = open_store(cli.stacks.settings).get("busybox:test")
    [row] = json.loads(cli(stack, "images", "--format", "json", "b").out)
    assert row == {"ID": image.id, "ContainerName": f"{stack.project.name}-b-1", "Repository": "busybox", "Tag": "test", "Size": image.size}
    assert cli(stack, "images", "-q").out == image.short_id + "\n"
