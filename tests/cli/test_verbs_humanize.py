"""How the verbs word times and states, as docker does (pure: no root, no kernel)."""

from __future__ import annotations

import datetime
from types import SimpleNamespace
from typing import Any

import pytest

from composer.cli.humanize import health_of, human_duration, parse_time, status_text
from composer.errors import UsageError


def ago(seconds: float) -> str:
    when = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=seconds)
    return when.isoformat().replace("+00:00", "Z")


def state(status: str, **fields: Any) -> Any:
    defaults = {"pid": 0, "exit_code": None, "started_at": "", "finished_at": ""}
    return SimpleNamespace(status=status, **{**defaults, **fields})


@pytest.mark.parametrize(("seconds", "words"), [
    (0.4, "Less than a second"), (1, "1 second"), (59, "59 seconds"), (60, "About a minute"),
    (119, "About a minute"), (120, "2 minutes"), (3599, "59 minutes"), (3600, "About an hour"),
    (5400, "2 hours"), (47 * 3600, "47 hours"), (3 * 86400, "3 days"), (15 * 86400, "2 weeks"),
    (90 * 86400, "3 months"), (800 * 86400, "2 years"),
])  # fmt: skip
def test_durations_are_worded_as_docker_words_them(seconds: float, words: str) -> None:
    assert human_duration(seconds) == words


def test_states_are_worded_as_docker_ps_words_them() -> None:
    assert status_text(state("created")) == "Created"
    assert status_text(state("running", started_at=ago(3.5))) == "Up 3 seconds"
    assert status_text(state("paused", started_at=ago(125))) == "Up 2 minutes (Paused)"
    assert status_text(state("exited", exit_code=1, started_at=ago(9), finished_at=ago(2))) == "Exited (1) 2 seconds ago"
    assert status_text(state("restarting", exit_code=3, finished_at=ago(5))) == "Restarting (3) 5 seconds ago"
    assert status_text(state("dead")) == "Dead"


def test_health_is_shown_when_there_is_a_healthcheck() -> None:
    assert status_text(state("running", started_at=ago(1), health="starting")) == "Up 1 second (health: starting)"
    assert status_text(state("running", started_at=ago(1), health="healthy")) == "Up 1 second (healthy)"
    assert health_of(state("running", health=SimpleNamespace(status="unhealthy"))) == "unhealthy"
    assert health_of(state("running")) == "" and health_of(state("running", health="")) == ""


def test_times_are_read_as_docker_reads_since_and_until() -> None:
    now = 1_700_000_000.0
    assert parse_time("1699999000", "--since", now) == 1_699_999_000.0
    assert parse_time("10m", "--since", now) == now - 600
    assert parse_time("1h30m", "--since", now) == now - 5400
    assert parse_time("2023-11-14T22:13:20Z", "--since", now) == now
    assert parse_time("2023-11-14T22:13:20", "--since", now) == now  # UTC without a zone
    assert parse_time("2023-11-14", "--since", now) == now - (22 * 3600 + 13 * 60 + 20)
    with pytest.raises(UsageError, match="--until 'soon'"):
        parse_time("soon", "--until", now)
