"""`composer ps`: the table, -a, --format json (docker compose's fields, and the host pid and
networks), --services, -q, --status and services named."""

from __future__ import annotations

import json

import pytest

from composer.config.loader import Stack
from composer.state import StateStore
from tests.cli.conftest import CARED_FOR, Cli, until

pytestmark = pytest.mark.kernel

STACK = """
services:
  db:
    image: busybox:test
    command: ["sh", "-c", "trap 'exit 3' TERM; sleep 300 & wait"]
  web:
    image: busybox:test
    command: ["httpd", "-f", "-p", "80"]
    ports: ["127.0.0.1::80"]
    depends_on: [db]
"""


def with_db_exited(cli: Cli) -> Stack:
    stack = cli.up(STACK)
    cli(stack, "stop", "db")
    return stack


def test_the_table_lists_running_containers_as_docker_compose(cli: Cli) -> None:
    stack = with_db_exited(cli)
    code, out, _ = cli(stack, "ps")
    header, *rows = out.splitlines()
    assert code == 0 and header.split() == ["NAME", "IMAGE", "COMMAND", "SERVICE", "CREATED", "STATUS", "PORTS"]
    [row] = rows
    with StateStore(cli.stacks.root) as store:
        [port] = store.ports(stack.project.name)
    assert row.startswith(f"{stack.project.name}-web-1   busybox:test   \"httpd -f -p 80\"   web   ")
    assert " ago   Up " in row and row.endswith(f"127.0.0.1:{port.host_port}->80/tcp")


def test_all_lists_stopped_containers_with_their_exit_code(cli: Cli) -> None:
    stack = with_db_exited(cli)
    rows = cli(stack, "ps", "-a").out.splitlines()[1:]
    assert [row.split()[0] for row in rows] == [f"{stack.project.name}-db-1", f"{stack.project.name}-web-1"]
    assert "Exited (3) " in rows[0] and rows[0].endswith(" ago")


def test_json_has_docker_composes_fields_and_the_pid_and_networks(cli: Cli) -> None:
    stack = with_db_exited(cli)
    p = stack.project.name
    code, out, _ = cli(stack, "ps", "-a", "--format", "json")
    db, web = json.loads(out)
    runtime = cli.stacks.runtime
    with StateStore(cli.stacks.root) as store:
        [port] = store.ports(p)
        [address] = store.addresses(container=f"{p}-web-1")
    assert code == 0
    assert {k: web[k] for k in ("Name", "Service", "State", "Health", "ExitCode", "Image", "Project")} == {
        "Name": f"{p}-web-1", "Service": "web", "State": "running", "Health": "", "ExitCode": 0,
        "Image": "busybox:test", "Project": p}
    assert web["Pid"] == runtime.get(f"{p}-web-1").state.pid > 0
    assert web["Networks"] == {f"{p}_default": address.address}
    assert web["Publishers"] == [{"URL": "127.0.0.1", "TargetPort": 80, "PublishedPort": port.host_port, "Protocol": "tcp"}]
    assert web["Status"].startswith("Up ")
    assert (db["State"], db["ExitCode"], db["Pid"], db["Publishers"]) == ("exited", 3, 0, [])
    assert db["Status"].startswith("Exited (3) ") and db["Status"].endswith(" ago")


def test_services_prints_the_services_and_quiet_the_container_names(cli: Cli) -> None:
    stack = with_db_exited(cli)
    assert cli(stack, "ps", "--services").out == "web\n"
    assert cli(stack, "ps", "-a", "--services").out == "db\nweb\n"
    assert cli(stack, "ps", "-q").out == f"{stack.project.name}-web-1\n"


def test_status_filters_by_state(cli: Cli) -> None:
    stack = with_db_exited(cli)
    assert cli(stack, "ps", "-q", "--status", "exited").out == f"{stack.project.name}-db-1\n"
    cli(stack, "pause", "web")
    assert cli(stack, "ps", "-q", "--status", "paused").out == f"{stack.project.name}-web-1\n"
    assert json.loads(cli(stack, "ps", "--format", "json").out)[0]["Status"].endswith("(Paused)")
    assert cli(stack, "ps", "--status", "asleep").code == 2


def test_services_named_select_their_containers_and_unknown_ones_are_errors(cli: Cli) -> None:
    stack = with_db_exited(cli)
    assert cli(stack, "ps", "-a", "-q", "db").out == f"{stack.project.name}-db-1\n"
    code, _, err = cli(stack, "ps", "nosuch")
    assert code == 1 and "no such service: nosuch" in err and "db, web" in err


def test_the_stack_file_may_come_first(cli: Cli) -> None:
    stack = with_db_exited(cli)
    from composer.cli.main import main

    cli.capsys.readouterr()
    assert main(["ps", "-q", str(stack.files[0]), "web"]) == 0
    assert cli.capsys.readouterr().out == f"{stack.project.name}-web-1\n"


def test_health_and_restarts_are_shown(cli: Cli) -> None:
    stack = cli.up(CARED_FOR)

    def rows() -> dict[str, dict[str, object]]:
        return {r["Service"]: r for r in json.loads(cli(stack, "ps", "-a", "--format", "json").out)}

    assert until(lambda: rows()["checked"]["Health"] == "healthy")
    assert str(rows()["checked"]["Status"]).endswith(" (healthy)")
    flaky: dict[str, object] = {}

    def restarting() -> bool:  # one look: the restart may come before a second one
        flaky.update(rows()["flaky"])
        return flaky["State"] == "restarting"

    assert until(restarting)
    assert flaky["ExitCode"] == 2 and str(flaky["Status"]).startswith("Restarting (2) ")
