"""`composer inspect`: a container as `docker inspect` shows it, checked against the kernel
(namespaces, cgroup, addresses, MAC) and the runtime's records."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from composer.config.loader import Stack
from composer.state import StateStore
from engine.network.netns import open_netns
from tests.cli.conftest import CARED_FOR, Cli, until
from tests.iproute import netns_iproute

pytestmark = pytest.mark.kernel

STACK = """
services:
  web:
    image: busybox:test
    command: ["httpd", "-f", "-p", "80"]
    environment: {GREETING: hello}
    ports: ["127.0.0.1::80"]
    mem_limit: 64m
    networks: [front, back]
  worker:
    image: busybox:test
    command: ["sleep", "300"]
    scale: 2
networks: {front: {}, back: {}}
"""


def inspected(cli: Cli, stack: Stack, name: str) -> list[dict[str, Any]]:
    code, out, _ = cli(stack, "inspect", name)
    assert code == 0
    documents: list[dict[str, Any]] = json.loads(out)
    return documents


def test_a_service_gives_each_of_its_containers(cli: Cli) -> None:
    stack = cli.up(STACK)
    p = stack.project.name
    assert [d["Name"] for d in inspected(cli, stack, "worker")] == [f"/{p}-worker-1", f"/{p}-worker-2"]
    assert [d["Id"] for d in inspected(cli, stack, f"{p}-worker-2")] == [f"{p}-worker-2"]


def test_config_and_state_are_those_of_the_container(cli: Cli) -> None:
    stack = cli.up(STACK)
    [web] = inspected(cli, stack, "web")
    container = cli.stacks.runtime.get(f"{stack.project.name}-web-1")
    assert (web["Path"], web["Args"]) == ("httpd", ["-f", "-p", "80"])
    assert web["Config"]["Image"] == "busybox:test" and "GREETING=hello" in web["Config"]["Env"]
    assert web["Config"]["Labels"]["composer.service"] == "web"
    assert web["Image"] == container.config.image_id
    state = web["State"]
    assert (state["Status"], state["Running"], state["Paused"], state["Pid"]) == ("running", True, False, container.state.pid)
    assert (state["ExitCode"], state["OOMKilled"], state["StartedAt"]) == (0, False, container.state.started_at)
    assert state["FinishedAt"] == "0001-01-01T00:00:00Z" and web["RestartCount"] == 0


def test_namespaces_are_those_proc_shows_for_its_first_process(cli: Cli) -> None:
    stack = cli.up(STACK)
    [web] = inspected(cli, stack, "web")
    pid = web["State"]["Pid"]
    assert web["Namespaces"]["net"] == os.readlink(f"/proc/{pid}/ns/net")
    assert web["Namespaces"]["pid"] == os.readlink(f"/proc/{pid}/ns/pid")
    assert web["Namespaces"]["net"] != os.readlink("/proc/self/ns/net")


def test_cgroup_graph_driver_and_log_path(cli: Cli) -> None:
    stack = cli.up(STACK)
    [web] = inspected(cli, stack, "web")
    runtime = cli.stacks.runtime
    name = f"{stack.project.name}-web-1"
    assert web["Cgroup"]["Path"] == runtime.cgroup_of(name)
    assert web["Cgroup"]["Limits"]["Memory"] == 64 << 20
    data = web["GraphDriver"]["Data"]
    assert web["GraphDriver"]["Name"] == "overlay"
    assert data["MergedDir"] == str(runtime.containers / name / "rootfs" / "merged")
    assert all(os.path.isdir(d) for d in [*data["LowerDir"].split(":"), data["UpperDir"], data["WorkDir"]])
    assert web["LogPath"] == str(runtime.containers / name / "container.log")


def test_network_settings_match_the_namespace_and_the_state_store(cli: Cli) -> None:
    stack = cli.up(STACK)
    p = stack.project.name
    [web] = inspected(cli, stack, "web")
    networks = web["NetworkSettings"]["Networks"]
    assert sorted(networks) == [f"{p}_back", f"{p}_front"]
    fd = open_netns(web["State"]["Pid"])
    try:
        with netns_iproute(fd) as ipr:
            macs = {link.get_attr("IFLA_IFNAME"): link.get_attr("IFLA_ADDRESS") for link in ipr.get_links()}
    finally:
        os.close(fd)
    with StateStore(cli.stacks.root) as store:
        records = {r.name: r for r in store.networks(p)}
        addresses = {a.bridge: a.address for a in store.addresses(container=f"{p}-web-1")}
        [port] = store.ports(p)
    for name, settings in networks.items():
        record = records[name]
        assert settings["IPAddress"] == addresses[record.bridge]
        assert settings["MacAddress"] == macs[settings["Interface"]]
        assert settings["Bridge"] == record.bridge and settings["HostInterface"]
    assert {s["Gateway"] for s in networks.values()} - {""} <= {r.gateway for r in records.values()}
    assert web["NetworkSettings"]["Ports"] == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port.host_port)}]}


def test_a_stopped_container_has_its_exit_and_no_namespaces(cli: Cli) -> None:
    stack = cli.up(STACK)
    cli(stack, "stop", "-t", "0", "web")
    [web] = inspected(cli, stack, "web")
    state = web["State"]
    assert (state["Status"], state["Running"], state["Pid"], state["ExitCode"]) == ("exited", False, 0, 137)
    assert state["FinishedAt"].endswith("Z") and web["Namespaces"] == {}


def test_an_unknown_name_is_an_error_naming_the_services(cli: Cli) -> None:
    stack = cli.up(STACK)
    code, out, err = cli(stack, "inspect", "nosuch")
    assert (code, out) == (1, "") and "no such service or container: nosuch" in err and "web, worker" in err


def test_health_and_restart_count_come_from_the_runtime(cli: Cli) -> None:
    stack = cli.up(CARED_FOR)
    assert until(lambda: inspected(cli, stack, "checked")[0]["State"].get("Health", {}).get("Status") == "healthy")
    health = inspected(cli, stack, "checked")[0]["State"]["Health"]
    assert health["FailingStreak"] == 0 and health["Log"] and health["Log"][-1]["ExitCode"] == 0
    assert until(lambda: inspected(cli, stack, "flaky")[0]["RestartCount"] >= 2)
    assert "Health" not in inspected(cli, stack, "flaky")[0]["State"]
