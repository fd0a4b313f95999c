"""Healthchecks as Docker's, without a kernel: the probe a test names, the defaults, the
schedule, and how results move a container from starting to healthy or unhealthy."""

from __future__ import annotations

import pytest

from engine.container.health import Health, HealthConfig, Probe
from engine.container.launch import ContainerError

PROBE = HealthConfig(("true",), interval=30.0, timeout=30.0, start_period=60.0, start_interval=5.0,
                     retries=3)  # fmt: skip


def result(code: int, output: str = "") -> Probe:
    return Probe("2030-01-01T00:00:00Z", "2030-01-01T00:00:01Z", code, output)


def test_cmd_runs_as_given_and_cmd_shell_with_the_shell() -> None:
    assert HealthConfig.from_test(["CMD", "curl", "-f", "http://x/"]).argv == ("curl", "-f", "http://x/")  # type: ignore[union-attr]
    assert HealthConfig.from_test(["CMD-SHELL", "curl -f x || exit 1"]).argv == ("/bin/sh", "-c", "curl -f x || exit 1")  # type: ignore[union-attr]


def test_none_or_no_test_disables_the_healthcheck() -> None:
    assert HealthConfig.from_test(["NONE"]) is None
    assert HealthConfig.from_test([]) is None


def test_an_unknown_test_form_is_refused() -> None:
    with pytest.raises(ContainerError, match="healthcheck test"):
        HealthConfig.from_test(["RUN", "true"])


def test_defaults_are_dockers_and_zero_means_default() -> None:
    probe = HealthConfig.from_test(["CMD", "true"], interval=0.0, retries=0)
    assert probe == HealthConfig(("true",), interval=30.0, timeout=30.0, start_period=0.0,
                                 start_interval=5.0, retries=3)  # fmt: skip


def test_a_success_makes_it_healthy_and_resets_the_streak() -> None:
    health = Health("unhealthy", 5).after(result(0), PROBE, since_start=100)
    assert (health.status, health.failing_streak) == ("healthy", 0)


def test_failures_make_it_unhealthy_after_retries_in_a_row() -> None:
    health = Health("healthy")
    for expected in ("healthy", "healthy", "unhealthy", "unhealthy"):
        health = health.after(result(1), PROBE, since_start=100)
        assert health.status == expected
    assert health.failing_streak == 4


def test_within_the_start_period_failures_of_a_starting_container_do_not_count() -> None:
    health = Health()
    for _ in range(5):
        health = health.after(result(1, "not yet"), PROBE, since_start=10)
    assert (health.status, health.failing_streak) == ("starting", 0)
    assert len(health.log) == 5  # logged all the same
    assert health.after(result(1), PROBE, since_start=60).failing_streak == 1


def test_within_the_start_period_failures_of_a_container_once_healthy_count() -> None:
    health = Health("healthy").after(result(1), PROBE, since_start=10)
    assert health.failing_streak == 1


def test_any_exit_but_zero_is_a_failure() -> None:
    for code in (1, 2, 126, -1):
        assert Health("healthy").after(result(code), PROBE, 100).failing_streak == 1


def test_the_log_keeps_the_last_five_probes() -> None:
    health = Health()
    for n in range(7):
        health = health.after(result(0, f"probe {n}"), PROBE, since_start=100)
    assert [p.output for p in health.log] == [f"probe {n}" for n in range(2, 7)]


def test_probes_come_every_start_interval_while_starting_in_the_start_period() -> None:
    assert PROBE.delay("starting", since_start=10) == 5.0
    assert PROBE.delay("healthy", since_start=10) == 30.0
    assert PROBE.delay("starting", since_start=60) == 30.0


def test_a_restart_starts_over_with_the_log_kept() -> None:
    health = Health("unhealthy", 3, (result(1),)).restarted()
    assert health == Health("starting", 0, (result(1),))


def test_the_record_reads_as_docker_inspect_shows_it() -> None:
    import json

    health = Health("healthy", 0, (result(0, "ok\n"),))
    assert json.loads(health.to_json()) == {
        "Status": "healthy", "FailingStreak": 0,
        "Log": [{"Start": "2030-01-01T00:00:00Z", "End": "2030-01-01T00:00:01Z", "ExitCode": 0, "Output": "ok\n"}],
    }  # fmt: skip
    assert Health.from_json(health.to_json()) == health
