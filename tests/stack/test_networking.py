"""A stack's networks for real: discovery by name, isolation between stacks and networks,
published ports, and nothing left behind (root, real kernel; traffic stays on the stacks'
own bridges and loopback)."""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import socket
import urllib.request
from pathlib import Path

import pytest

from composer.discovery import ContainerFiles
from composer.state import StateStore
from engine.network.netns import netns_socket, open_netns
from engine.network.nftables import nftables_ruleset
from tests.stack.conftest import Stacks

pytestmark = pytest.mark.kernel

# Debian's busybox 1.35 wget segfaults with -T (on the host too): timeouts come from `timeout`.

WEB = """
  web:
    image: busybox:test
    command: ["sh", "-c", "mkdir -p /www; echo hello from $$HOSTNAME > /www/index.html; exec httpd -f -p 80 -h /www"]
"""
IDLE = '["sleep", "300"]'


def naming(ruleset: list[str], names: set[str]) -> set[str]:
    """The objects of an nftables ruleset that name one of `names` (interfaces), and their
    members of sets: what a stack's networks put there. Other programs (Docker, podman, other
    stacks) change the rest of the host's ruleset at any time."""
    found = set()
    for line in ruleset:
        [(kind, fields)] = json.loads(line).items()
        if kind == "set":
            found |= {f"nft member of {fields['table']} {fields['name']}: {e}" for e in fields.get("elem", []) if e in names}
        elif any(f'"{name}"' in line for name in names):
            found.add(f"nft {line}")
    return found


def address_in_hosts(stacks: Stacks, project: str, container: str, name: str) -> str:
    hosts = ContainerFiles(stacks.root / "stacks" / project / "files" / container).hosts
    for line in hosts.read_text().splitlines():
        if name in line.split()[1:]:
            return line.split()[0]
    raise AssertionError(f"{name} is not in the hosts file of {container}")


def test_services_find_each_other_by_service_alias_and_container_name(stacks: Stacks) -> None:
    stack = stacks.load("services:" + WEB + f"""
    networks: {{default: {{aliases: [www]}}}}
  client:
    image: busybox:test
    command: {IDLE}
""")
    stacks.up(stack)
    p = stack.project.name
    for name in ("web", "www", f"{p}-web-1"):
        code, out = stacks.run(f"{p}-client-1", f"timeout 5 wget -q -O- http://{name}/")
        assert (code, out) == (0, f"hello from {p}-web-1\n"), name


def test_udp_reaches_a_peer_at_the_address_its_name_has(stacks: Stacks) -> None:
    # Debian's busybox nc has no UDP: the two ends are sockets made in each container's
    # network namespace, the address is the one the client's hosts file gives "server".
    stack = stacks.load(f"""
services:
  server:
    image: busybox:test
    command: {IDLE}
  client:
    image: busybox:test
    command: {IDLE}
""")
    stacks.up(stack)
    p = stack.project.name
    runtime = stacks.runtime
    address = address_in_hosts(stacks, p, f"{p}-client-1", "server")
    server_ns = open_netns(runtime.get(f"{p}-server-1").state.pid)
    client_ns = open_netns(runtime.get(f"{p}-client-1").state.pid)
    try:
        server = netns_socket(server_ns, socket.AF_INET, socket.SOCK_DGRAM)
        client = netns_socket(client_ns, socket.AF_INET, socket.SOCK_DGRAM)
        with server, client:
            server.bind(("0.0.0.0", 9000))
            server.settimeout(5)
            client.settimeout(5)
            client.sendto(b"ping", (address, 9000))
            data, sender = server.recvfrom(100)
            server.sendto(b"pong", sender)
            assert data == b"ping" and client.recvfrom(100)[0] == b"pong"
    finally:
        os.close(server_ns)
        os.close(client_ns)


def test_two_stacks_cannot_reach_each_other(stacks: Stacks) -> None:
    one = stacks.load("services:" + WEB)
    two = stacks.load(f"services:\n  client:\n    image: busybox:test\n    command: {IDLE}\n")
    stacks.up(one)
    stacks.up(two)
    with StateStore(stacks.root) as store:
        [web] = store.addresses(container=f"{one.project.name}-web-1")
    code, out = stacks.run(f"{two.project.name}-client-1", f"timeout 2 wget -q -O- http://{web.address}/")
    assert code != 0 and "hello" not in out
    code, _ = stacks.run(f"{two.project.name}-client-1", "grep -c web /etc/hosts")
    assert code == 1  # not even named


def test_an_internal_network_reaches_its_peers_but_has_no_default_route(stacks: Stacks) -> None:
    stack = stacks.load("services:" + WEB + f"""
    networks: [inside]
  client:
    image: busybox:test
    command: {IDLE}
    networks: [inside]
networks:
  inside:
    internal: true
""")
    stacks.up(stack)
    client = f"{stack.project.name}-client-1"
    code, out = stacks.run(client, "timeout 5 wget -q -O- http://web/")
    assert code == 0 and out.startswith("hello")
    code, out = stacks.run(client, "ip route")
    assert code == 0 and "default" not in out


def test_a_service_on_two_networks_reaches_both_sides(stacks: Stacks) -> None:
    stack = stacks.load(f"""
services:
  front:
    image: busybox:test
    command: ["sh", "-c", "mkdir /w; echo front > /w/index.html; exec httpd -f -p 80 -h /w"]
    networks: [a]
  back:
    image: busybox:test
    command: ["sh", "-c", "mkdir /w; echo back > /w/index.html; exec httpd -f -p 80 -h /w"]
    networks: [b]
  both:
    image: busybox:test
    command: {IDLE}
    networks: [a, b]
networks: {{a: {{}}, b: {{}}}}
""")
    stacks.up(stack)
    p = stack.project.name
    assert stacks.run(f"{p}-both-1", "timeout 5 wget -q -O- http://front/; timeout 5 wget -q -O- http://back/") == (0, "front\nback\n")
    code, out = stacks.run(f"{p}-both-1", "ip -o addr show | grep -c 'eth[01] .*inet '")
    assert out.strip() == "2"
    code, _ = stacks.run(f"{p}-front-1", "timeout 2 wget -q -O- http://back/")
    assert code != 0  # front is not on b


def test_network_mode_service_shares_its_localhost(stacks: Stacks) -> None:
    stack = stacks.load("services:" + WEB + f"""
  sidecar:
    image: busybox:test
    command: {IDLE}
    network_mode: "service:web"
    depends_on: [web]
""")
    stacks.up(stack)
    code, out = stacks.run(f"{stack.project.name}-sidecar-1", "timeout 5 wget -q -O- http://127.0.0.1/")
    assert code == 0 and out == f"hello from {stack.project.name}-web-1\n"


def test_a_published_port_serves_200_concurrent_connections_and_50_mb_intact(stacks: Stacks, tmp_path: Path) -> None:
    data = tmp_path / "www"
    data.mkdir()
    blob = os.urandom(50 << 20)
    (data / "blob").write_bytes(blob)
    (data / "index.html").write_text("ok\n")
    stack = stacks.load(f"""
services:
  web:
    image: busybox:test
    command: ["httpd", "-f", "-p", "80", "-h", "/www"]
    volumes: ["{data}:/www:ro"]
    ports: ["127.0.0.1::80"]
""")
    stacks.up(stack)
    with StateStore(stacks.root) as store:
        [port] = store.ports(stack.project.name)
    assert port.host_ip == "127.0.0.1" and port.host_port > 0
    url = f"http://127.0.0.1:{port.host_port}"

    def get(path: str) -> bytes:
        with urllib.request.urlopen(url + path, timeout=30) as response:
            return bytes(response.read())

    with concurrent.futures.ThreadPoolExecutor(200) as pool:
        assert list(pool.map(lambda _: get("/index.html"), range(200))) == [b"ok\n"] * 200
    assert hashlib.sha256(get("/blob")).hexdigest() == hashlib.sha256(blob).hexdigest()


def test_a_host_port_in_use_is_an_error_naming_the_service_before_anything_starts(stacks: Stacks) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    with taken:
        stack = stacks.load("services:" + WEB + f'    ports: ["127.0.0.1:{taken.getsockname()[1]}:80"]\n')
        with pytest.raises(Exception, match=rf"service web: .*127.0.0.1:{taken.getsockname()[1]}"):
            stacks.up(stack)
    assert stacks.runtime.ids() == []


def test_hosts_files_are_rewritten_in_place_when_a_replica_is_added(stacks: Stacks) -> None:
    text = "services:" + WEB + f"""
    scale: SCALE
  client:
    image: busybox:test
    command: {IDLE}
"""
    stack = stacks.load(text.replace("SCALE", "1"))
    p = stack.project.name
    stacks.up(stack)
    hosts = ContainerFiles(stacks.root / "stacks" / p / "files" / f"{p}-client-1").hosts
    inode = hosts.stat().st_ino
    stacks.up(stacks.load(text.replace("SCALE", "2"), project=p))
    assert hosts.stat().st_ino == inode
    code, out = stacks.run(f"{p}-client-1", f"grep -w web /etc/hosts | wc -l; timeout 5 wget -q -O- http://{p}-web-2/")
    assert (code, out) == (0, f"2\nhello from {p}-web-2\n")


def test_down_leaves_the_hosts_links_routes_mounts_and_nftables_rules_as_they_were(stacks: Stacks) -> None:
    # Docker, podman and other test runs change this host meanwhile: what is looked at is what
    # the stack made, none of which existed before — links and nftables objects naming its
    # bridges and veths (their members of our set), routes into its subnets, mounts under its
    # state root.
    from tests.iproute import host_iproute

    def snapshot(names: set[str], subnets: set[str]) -> set[str]:
        with host_iproute() as ipr:
            found = {f"link {link.get_attr('IFLA_IFNAME')}" for link in ipr.get_links()} & {f"link {n}" for n in names}
            routes = {f"{r.get_attr('RTA_DST')}/{r['dst_len']}" for r in ipr.get_routes()}
        found |= {f"route {r}" for r in routes & subnets}
        found |= {f"mount {line.split()[4]}" for line in Path("/proc/self/mountinfo").read_text().splitlines()
                  if line.split()[4].startswith(str(stacks.root))}  # fmt: skip
        return found | naming(nftables_ruleset(), names)

    stack = stacks.load("services:" + WEB + '    ports: ["127.0.0.1::80"]\n    networks: [a, b]\nnetworks: {a: {}, b: {}}\n')
    stacks.up(stack)
    with StateStore(stacks.root) as store:
        records = store.networks(stack.project.name)
    names = {r.bridge for r in records} | {a.host_ifname for a in stacks.runtime.get(f"{stack.project.name}-web-1").config.networks}
    subnets = {r.subnet for r in records}
    made = snapshot(names, subnets)
    assert {f"link {n}" for n in names} | {f"route {s}" for s in subnets} <= made
    assert sum(m.startswith("nft ") for m in made) >= 2 * 3  # two rules and a member each
    stacks.down(stack.project.name)
    assert snapshot(names, subnets) == set()  # as before up: none of it existed
