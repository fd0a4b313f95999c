"""Restart policies as Docker's, decided without a kernel: which exits restart a container, the
crash-loop backoff (immediate, then 100 ms doubling to 1 min, reset by 10 s of running), and
the policy in a container's config."""

from __future__ import annotations

import pytest

from engine.container.config import ContainerConfig
from engine.container.health import HealthConfig
from engine.container.launch import ContainerError
from engine.container.restart import Backoff, Decision, RestartPolicy, decide

ALWAYS = RestartPolicy("always")
FRESH = Backoff()


def crash(policy: RestartPolicy, exit_code: int | None = 1, restarts: int = 0, stopped: bool = False,
          ran_for: float = 0.5, backoff: Backoff = FRESH) -> Decision:  # fmt: skip
    return decide(policy, exit_code, restarts, stopped, ran_for, backoff)


@pytest.mark.parametrize(("text", "policy"), [
    ("no", RestartPolicy("no")),
    ("always", RestartPolicy("always")),
    ("unless-stopped", RestartPolicy("unless-stopped")),
    ("on-failure", RestartPolicy("on-failure")),
    ("on-failure:5", RestartPolicy("on-failure", 5)),
])  # fmt: skip
def test_policies_are_read_in_dockers_form(text: str, policy: RestartPolicy) -> None:
    assert RestartPolicy.parse(text) == policy
    assert str(policy) == text


@pytest.mark.parametrize("text", ["", "yes", "always:3", "on-failure:", "on-failure:x", "on-failure:-1", "Always"])
def test_anything_else_is_refused(text: str) -> None:
    with pytest.raises(ContainerError, match="restart policy"):
        RestartPolicy.parse(text)


def test_no_never_restarts() -> None:
    assert not crash(RestartPolicy("no")).restart


@pytest.mark.parametrize("code", [0, 1, 137, None])
def test_always_and_unless_stopped_restart_whatever_the_exit(code: int | None) -> None:
    assert crash(ALWAYS, code).restart
    assert crash(RestartPolicy("unless-stopped"), code).restart


def test_on_failure_restarts_a_failure_only() -> None:
    policy = RestartPolicy("on-failure")
    assert crash(policy, 1).restart and crash(policy, 137).restart
    assert crash(policy, None).restart  # ended unrecorded (its shim killed too): not a success
    skipped = crash(policy, 0)
    assert not skipped.restart and skipped.reason == "exited with code 0"


def test_on_failure_with_a_limit_gives_up_after_that_many_restarts() -> None:
    policy = RestartPolicy.parse("on-failure:2")
    assert crash(policy, restarts=0).restart
    assert crash(policy, restarts=1).restart
    given_up = crash(policy, restarts=2)
    assert not given_up.restart and given_up.reason == "on-failure:2: restarted 2 times already"


def test_on_failure_without_a_limit_never_gives_up() -> None:
    assert crash(RestartPolicy("on-failure"), restarts=10_000).restart


@pytest.mark.parametrize("name", ["always", "unless-stopped", "on-failure"])
def test_a_container_stopped_on_purpose_is_not_restarted_by_any_policy(name: str) -> None:
    decision = crash(RestartPolicy(name), stopped=True)
    assert not decision.restart and decision.reason == "stopped on purpose"


def test_the_first_restart_is_immediate_then_the_delay_doubles_from_100_ms_to_1_min() -> None:
    delays, backoff = [], Backoff()
    for _ in range(14):
        decision = crash(ALWAYS, backoff=backoff)
        assert decision.delay is not None
        delays.append(decision.delay)
        backoff = decision.backoff
    assert delays == [0.0, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 51.2, 60.0, 60.0, 60.0]


def test_ten_seconds_of_running_end_the_crash_loop() -> None:
    backoff = Backoff(6.4)
    assert crash(ALWAYS, ran_for=9.9, backoff=backoff).delay == 12.8
    after_a_good_run = crash(ALWAYS, ran_for=10.0, backoff=backoff)
    assert after_a_good_run.delay == 0.0
    assert crash(ALWAYS, backoff=after_a_good_run.backoff).delay == 0.1


def test_a_decision_not_to_restart_keeps_the_backoff() -> None:
    backoff = Backoff(0.4)
    assert crash(RestartPolicy("on-failure"), 0, backoff=backoff).backoff == backoff


def test_a_container_config_takes_a_valid_policy_only() -> None:
    config = ContainerConfig("c", "i", ("/l",), ("sh",), restart="on-failure:3")
    assert config.restart == "on-failure:3"
    assert ContainerConfig("c", "i", ("/l",), ("sh",)).restart == "no"
    with pytest.raises(ContainerError, match="restart policy"):
        ContainerConfig("c", "i", ("/l",), ("sh",), restart="sometimes")


def test_restart_and_healthcheck_survive_the_config_file() -> None:
    probe = HealthConfig(("/bin/sh", "-c", "true"), interval=2.0, timeout=1.0, start_period=5.0,
                         start_interval=0.5, retries=4)  # fmt: skip
    config = ContainerConfig("c", "i", ("/l",), ("sh",), restart="always", healthcheck=probe)
    assert ContainerConfig.from_json(config.to_json()) == config
    plain = ContainerConfig("c", "i", ("/l",), ("sh",))
    assert ContainerConfig.from_json(plain.to_json()) == plain


def test_every_part_of_a_container_config_survives_the_config_file() -> None:
    from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface

    from engine.cgroups.base import CgroupLimits
    from engine.container.spec import Mount, Rlimit
    from engine.network.veth import Attachment

    network = Attachment(bridge="br-x", host_ifname="vx1", address=IPv4Interface("10.9.0.2/24"),
                         gateway=IPv4Address("10.9.0.1"), mtu=1400, mac="02:42:0a:09:00:02",
                         address6=IPv6Interface("fd00::2/64"),
                         gateway6=IPv6Address("fd00::1"))  # fmt: skip
    config = ContainerConfig(
        "c", "i", ("/l1", "/l2"), ("sh", "-c", 'echo "quoted" é'),
        env=("A=1", "B="), mounts=(Mount("bind", "/data", "/srv", read_only=True),
                                   Mount("tmpfs", "/run", options="size=1m")),
        files=(("/etc/hosts", "/h"),), rlimits=(Rlimit("RLIMIT_NOFILE", 1024, 2048),),
        sysctls=(("net.core.somaxconn", "1024"),), limits=CgroupLimits(memory_limit=1 << 26),
        networks=(network,), labels=(("k", "v"),), uid_map=((0, 100000, 65536),),
        gid_map=((0, 100000, 65536),), oom_score_adj=-500,
    )  # fmt: skip
    assert ContainerConfig.from_json(config.to_json()) == config
