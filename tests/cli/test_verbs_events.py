"""`composer events`: the stack's events from the state store (what composer's commands did)
and the supervisor (what the containers did), as docker compose prints them, followed until
Ctrl-C."""

from __future__ import annotations

import json
import re
import signal
import time

import pytest

from composer.config.loader import Stack
from tests.cli.conftest import CARED_FOR, Cli, until

pytestmark = pytest.mark.kernel

STACK = """
services:
  db:
    image: busybox:test
    command: ["sh", "-c", "trap 'exit 0' TERM; sleep 300 & wait"]
  job:
    image: busybox:test
    command: ["sh", "-c", "sleep 2; exit 4"]
"""
HISTORY = ("--since", "1h", "--until", "0s")


def history(cli: Cli, stack: Stack, *args: str) -> list[dict[str, object]]:
    out = cli(stack, "events", "--json", *HISTORY, *args).out
    return [json.loads(line) for line in out.splitlines()]


def test_json_events_have_docker_composes_keys(cli: Cli) -> None:
    stack = cli.up(STACK)
    cli(stack, "stop", "db")
    [event] = [e for e in history(cli, stack) if e["action"] == "stop"]
    assert set(event) == {"time", "type", "service", "id", "action", "attributes"}
    assert (event["type"], event["service"], event["id"]) == ("container", "db", f"{stack.project.name}-db-1")
    assert event["attributes"] == {"name": f"{stack.project.name}-db-1", "image": "busybox:test"}
    assert str(event["time"]).endswith("Z")


def test_a_container_ending_by_itself_is_a_die_event_with_its_exit_code(cli: Cli) -> None:
    stack = cli.up(STACK)
    assert until(lambda: any(e["action"] == "die" for e in history(cli, stack)))
    [died] = [e for e in history(cli, stack) if e["action"] == "die"]
    assert died["service"] == "job" and died["attributes"]["exitCode"] == "4"  # type: ignore[index]


def test_the_text_form_is_time_container_action_id_and_attributes(cli: Cli) -> None:
    stack = cli.up(STACK)
    cli(stack, "pause", "db")
    out = cli(stack, "events", *HISTORY).out
    [line] = [line for line in out.splitlines() if " pause " in line]
    name = f"{stack.project.name}-db-1"
    assert re.fullmatch(rf"\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{{6}} container pause {name} \(image=busybox:test, name={name}\)", line)


def test_services_named_select_their_events(cli: Cli) -> None:
    stack = cli.up(STACK)
    cli(stack, "stop", "db", "job")
    assert {e["service"] for e in history(cli, stack, "db")} == {"db"}
    code, _, err = cli(stack, "events", *HISTORY, "nosuch")
    assert code == 1 and "no such service: nosuch" in err


def test_new_events_are_followed_until_interrupted(cli: Cli) -> None:
    stack = cli.up(STACK)
    process = cli.spawn(stack, "events", "--json", "db")
    time.sleep(1)
    cli(stack, "stop", "db")
    cli(stack, "start", "db")
    time.sleep(1)
    process.send_signal(signal.SIGINT)
    out, _ = process.communicate(timeout=20)
    actions = [json.loads(line)["action"] for line in out.splitlines()]
    assert process.returncode == 130
    assert sorted(actions[:2]) == ["die", "stop"] and "start" in actions[2:]


def test_health_changes_and_restarts_by_policy_are_events(cli: Cli) -> None:
    stack = cli.up(CARED_FOR)
    assert until(lambda: "health_status: healthy" in [e["action"] for e in history(cli, stack, "checked")])
    assert until(lambda: [e["action"] for e in history(cli, stack, "flaky")].count("restart") >= 2)
