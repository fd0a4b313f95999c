"""A stack's lifecycle, against docker-compose and podman-compose in the same run: `up -d` and
`down -t 0` of generated stacks, restart of a killed container, a deleted bridge healed, the
supervisor's idle CPU and the memory of our own processes per container.

Measures (each a function; `--only NAME` runs some of them):

- `up_down_10`, `up_down_50`: a stack of a `base` service and N-1 services `s1..` that each
  `depends_on: [base]`, all busybox `httpd -f -p 80`, written to a temporary directory. Wall
  time of the whole CLI process `TOOL -f FILE -p PROJECT up -d`, then of `... down -t 0`,
  repeated; every `up` starts from nothing (the previous run's `down`; podman-compose's
  network is removed too, outside the timed part) with the image present. The tools take
  turns within each run, in an order that rotates, so that a drift of the machine touches
  each alike. composer twice: as a user's commands run after the first one in a state root,
  handed to the root's fork server (started, and waited for, before the first run); and
  `composer (no fork server)`, each command in its own interpreter (COMPOSER_FORKSERVER=0),
  as the first command in a root runs.
- `restart`: one service with `restart: always`; its PID 1 is killed with SIGKILL (host pid
  from `composer ps --format json` field `Pid`, else the container's `state.json`), then
  the time until a new pid runs, polled every millisecond (composer: its `state.json` and
  /proc; docker: its API on /var/run/docker.sock). Not supported when nothing restarts it
  within 5 s.
- `bridge_heal`: the 10-service stack up, every container answering a TCP connect on port 80
  from the host; its bridge deleted (pyroute2); the time from the deletion's request (the
  kernel takes ~40 ms to carry it out) until every one answers again (each
  connect bound to the bridge with SO_BINDTODEVICE, so that nothing leaves the machine while
  the bridge is gone). Not supported when that has not happened within 10 s.
- `idle_cpu`: 200 containers (199 replicas of busybox `sleep 3600` and one httpd that
  publishes a loopback port, so that the supervisor serves a port as most stacks' do); after
  3 s of rest, the CPU time (every thread's schedstat) of the stack's supervisor over
  10 s, as % of one core; also all shims'.
- `memory`: the 50-service stack (its `base` publishing a loopback port, as above): PSS and
  RSS of our own processes — the supervisor, the fork server and each
  container's shim (the parent of its PID 1) — divided by 50. Peers: the parents of their
  containers' PID 1 (containerd-shim, conmon), and docker's daemons, separately.

Peers run only when installed: docker-compose with a dockerd answering, podman-compose with
podman (`/work/shared/tools/setup-peers.sh` installs both and their busybox images). Every
run uses a temporary COMPOSER_ROOT with the busybox image of `examples/busybox-image.sh`,
and removes everything it made (`down`, then the supervisors and fork server of that root by
pid).

Run as root:  .venv/bin/python bench/stack_bench.py [--quick] [--only NAME]... [--no-peers]
Writes bench/results/stack_bench.json.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import re
import secrets
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from composer.state import StateStore
from engine.daemon import running_pid

REPO = Path(__file__).resolve().parents[1]
COMPOSER = REPO / ".venv" / "bin" / "composer"
HTTPD = "httpd -f -p 80"
RESTART_WAIT = 5.0
HEAL_WAIT = 10.0
NOT_SUPPORTED = "not supported yet"


# -- processes -------------------------------------------------------------------------------


def alive(pid: int) -> bool:
    """`pid` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat[stat.rindex(b")") + 2 : stat.rindex(b")") + 3] != b"Z"


def parent(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_bytes()
    return int(stat[stat.rindex(b")") + 2 :].split()[1])


def memory_kb(pid: int) -> dict[str, int]:
    """Proportional and resident set size of `pid`, in KiB."""
    found = {"pss": 0, "rss": 0}
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            key = line.split(":")[0]
            if key in ("Pss", "Rss"):
                found[key.lower()] = int(line.split()[1])
    return found


def cpu_seconds(pid: int) -> float:
    """CPU time of every thread of `pid` so far (schedstat: nanoseconds)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


def pids_named(comm: str) -> list[int]:
    """Pids whose command name is `comm` (read only: to weigh a peer's daemons)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                if (entry / "comm").read_text().strip() == comm:
                    found.append(int(entry.name))
    return found


def summary(seconds: list[float]) -> dict[str, Any]:
    return {
        "median_s": round(statistics.median(seconds), 3),
        "min_s": round(min(seconds), 3),
        "max_s": round(max(seconds), 3),
        "runs_s": [round(s, 3) for s in seconds],
    }


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=10)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self._path)


class DockerAPI:
    """Docker's HTTP API on its socket: a few ms a call, where the docker CLI takes 50."""

    def __init__(self, path: str = "/var/run/docker.sock") -> None:
        self._connection = _UnixHTTPConnection(path)

    def get(self, url: str) -> Any:
        self._connection.request("GET", url)
        response = self._connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"docker API {url}: {response.status} {body[:200]!r}")
        return json.loads(body)

    def pid(self, container: str) -> int:
        state = self.get(f"/containers/{container}/json")["State"]
        return int(state["Pid"]) if state["Running"] else 0

    def close(self) -> None:
        self._connection.close()


# -- tools and stacks ------------------------------------------------------------------------


@dataclass(frozen=True)
class Tool:
    name: str  # composer, docker-compose or podman-compose
    image: str
    environ: tuple[tuple[str, str], ...] = ()

    @property
    def executable(self) -> str:
        return str(COMPOSER) if self.name.startswith("composer") else self.name


UNSERVED = "composer (no fork server)"


@dataclass(frozen=True)
class Stack:
    tool: Tool
    file: Path
    project: str
    services: list[str]


@dataclass
class Bench:
    """The bench's state root, stack files and peers; `cleanup` removes what it brought up."""

    directory: Path
    tools: list[Tool]
    notes: list[str] = field(default_factory=list)
    up_now: list[Stack] = field(default_factory=list)

    @property
    def root(self) -> Path:
        return self.directory / "root"

    @property
    def env(self) -> dict[str, str]:
        path = f"{COMPOSER.parent}:{os.environ.get('PATH', '/usr/bin:/bin')}"
        return {**os.environ, "COMPOSER_ROOT": str(self.root), "PATH": path}

    def tool(self, name: str) -> Tool | None:
        return next((t for t in self.tools if t.name == name), None)

    def stack(self, tool: Tool, services: dict[str, dict[str, Any]]) -> Stack:
        project = f"sb{secrets.token_hex(3)}"
        path = self.directory / tool.name / project / "compose.yaml"
        path.parent.mkdir(parents=True)
        for definition in services.values():
            definition.setdefault("image", tool.image)
        path.write_text(json.dumps({"services": services}, indent=1))  # JSON is YAML
        return Stack(tool, path, project, list(services))

    def command(self, stack: Stack, *verb: str, timeout: float = 900) -> str:
        argv = [stack.tool.executable, "-f", str(stack.file), "-p", stack.project, *verb]
        done = subprocess.run(argv, env={**self.env, **dict(stack.tool.environ)},
                              capture_output=True, text=True,
                              timeout=timeout, check=False)  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)}: exit {done.returncode}\n{done.stderr[-2000:]}")
        return done.stdout

    def up(self, stack: Stack) -> float:
        self.up_now.append(stack)
        started = time.perf_counter()
        self.command(stack, "up", "-d")
        return time.perf_counter() - started

    def down(self, stack: Stack) -> float:
        started = time.perf_counter()
        self.command(stack, "down", "-t", "0")
        took = time.perf_counter() - started
        self.up_now.remove(stack)
        if stack.tool.name == "podman-compose":  # its down leaves the network
            subprocess.run(["podman", "network", "rm", "-f", f"{stack.project}_default"],
                           capture_output=True, check=False)  # fmt: skip
        return took

    @contextlib.contextmanager
    def running(self, stack: Stack) -> Iterator[float]:
        """The stack up for the block (its `up` time given), down after it whatever happens."""
        took = self.up(stack)
        try:
            yield took
        finally:
            self.down(stack)

    def pids(self, stack: Stack) -> dict[str, int]:
        """Host pid of each running container's PID 1, by container name."""
        if stack.tool.name.startswith("composer"):
            rows = json.loads(self.command(stack, "ps", "--format", "json"))
            found = {}
            for row in rows:
                pid = row.get("Pid") or self.state_pid(row["Name"])
                if pid:
                    found[row["Name"]] = int(pid)
            return found
        if stack.tool.name == "docker-compose":
            api = DockerAPI()
            try:
                label = json.dumps({"label": [f"com.docker.compose.project={stack.project}"]})
                listed = api.get(f"/containers/json?filters={urllib.parse.quote(label)}")
                return {c["Names"][0].lstrip("/"): api.pid(c["Id"]) for c in listed}
            finally:
                api.close()
        listed = json.loads(subprocess.run(
            ["podman", "ps", "--format", "json",
             "--filter", f"label=io.podman.compose.project={stack.project}"],
            capture_output=True, text=True, check=True).stdout)  # fmt: skip
        return {c["Names"][0]: int(c["Pid"]) for c in listed}

    def state_pid(self, container: str) -> int | None:
        try:
            record = json.loads((self.root / "containers" / container / "state.json").read_bytes())
            return int(record["pid"])
        except (FileNotFoundError, ValueError, KeyError):
            return None

    def down_all(self) -> None:
        """Whatever a failed measure left up."""
        for stack in list(self.up_now):
            with contextlib.suppress(Exception):
                self.down(stack)

    def cleanup(self) -> None:
        self.down_all()
        # The supervisors and the fork server our commands started in this root, by the pid
        # in their lock files; nothing else.
        for lock in (self.root / "run").glob("*.lock"):
            pid = running_pid(lock)
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        for line in reversed(Path("/proc/self/mountinfo").read_text().splitlines()):
            if line.split()[4].startswith(str(self.root)):
                subprocess.run(["umount", "-l", line.split()[4]], check=False)
        shutil.rmtree(self.directory, ignore_errors=True)


def httpd_stack(count: int, *, publish: bool = False) -> dict[str, dict[str, Any]]:
    """`base` and count-1 services that depend on it, all busybox httpd."""
    services: dict[str, dict[str, Any]] = {"base": {"command": HTTPD}}
    if publish:
        services["base"]["ports"] = ["127.0.0.1::80"]
    for n in range(1, count):
        services[f"s{n}"] = {"command": HTTPD, "depends_on": ["base"]}
    return services


# -- measures --------------------------------------------------------------------------------


def measure_up_down(bench: Bench, count: int, runs: int) -> dict[str, Any]:
    ours = bench.tool("composer")
    assert ours is not None
    unserved = Tool(UNSERVED, ours.image, (("COMPOSER_FORKSERVER", "0"),))
    stacks = [bench.stack(tool, httpd_stack(count)) for tool in [*bench.tools, unserved]]
    up: dict[str, list[float]] = {s.tool.name: [] for s in stacks}
    down: dict[str, list[float]] = {s.tool.name: [] for s in stacks}
    failed: dict[str, str] = {}  # a peer that failed: left out of the next runs
    for run in range(runs):
        order = stacks[run % len(stacks) :] + stacks[: run % len(stacks)]
        for stack in order:
            name = stack.tool.name
            if name in failed:
                continue
            try:
                up[name].append(bench.up(stack))
                running = len(bench.pids(stack))
                if running != count:
                    raise RuntimeError(f"{name}: {running} of {count} containers run")
                down[name].append(bench.down(stack))
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                if name in ("composer", UNSERVED):
                    raise  # ours: the measure fails
                failed[name] = str(exc)[-2000:]  # docker's down now and then: "active endpoints"
                with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                    if stack in bench.up_now:
                        bench.down(stack)

    def summaries(times: dict[str, list[float]]) -> dict[str, Any]:
        return {name: summary(t) for name, t in times.items() if t and name not in failed}

    return {
        "services": count,
        "images_present": True,
        "up": summaries(up),
        "down": summaries(down),
        "failed": failed,
    }


def _wait_new_pid(old: int, current: Callable[[], int | None], limit: float) -> float | None:
    """Seconds until `current()` gives a live pid other than `old`, or None after `limit`."""
    started = time.perf_counter()
    while (elapsed := time.perf_counter() - started) < limit:
        with contextlib.suppress(Exception):
            pid = current()
            if pid and pid != old and alive(pid):
                return elapsed
        time.sleep(0.001)
    return None


def _restart_once(bench: Bench, tool: Tool) -> float | None:
    """A new stack (so that docker's restart delay starts from its first value), its one
    container killed: seconds until a new process runs."""
    stack = bench.stack(tool, {"r": {"command": "sleep 3600", "restart": "always"}})
    api = DockerAPI() if tool.name == "docker-compose" else None
    try:
        with bench.running(stack):
            ((name, pid),) = bench.pids(stack).items()
            current: Callable[[], int | None] = (
                (lambda: api.pid(name)) if api is not None else (lambda: bench.state_pid(name))
            )
            os.kill(pid, signal.SIGKILL)
            return _wait_new_pid(pid, current, RESTART_WAIT)
    finally:
        if api is not None:
            api.close()


def _restarts(bench: Bench, tool: Tool, runs: int) -> dict[str, Any]:
    times = []
    for _ in range(runs):
        took = _restart_once(bench, tool)
        if took is None:
            return {"supported": False, "note": f"{NOT_SUPPORTED}: no new process within 5 s"}
        times.append(took)
    return {"supported": True, **summary(times)}


def measure_restart(bench: Bench, runs: int) -> dict[str, Any]:
    result = {}
    for tool in bench.tools:
        if tool.name != "podman-compose":  # the issue compares with docker only
            result[tool.name] = _restarts(bench, tool, runs)
    return result


def _bridges(bench: Bench, project: str) -> list[str]:
    with StateStore(bench.root) as store:
        return [n.bridge for n in store.networks(project)]


def _answering(addresses: dict[str, str], wait: float = 0.05) -> set[str]:
    """Of {address: bridge}, the addresses that accept a TCP connection on port 80 within
    `wait`, reached only through their bridge (no bridge: no answer)."""
    pending: dict[int, tuple[socket.socket, str]] = {}
    answered = set()
    try:
        for address, bridge in addresses.items():
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, bridge.encode())
            except OSError:
                s.close()
                continue
            s.setblocking(False)
            s.connect_ex((address, 80))
            pending[s.fileno()] = (s, address)
        deadline = time.monotonic() + wait
        waiting = dict(pending)
        while waiting and (left := deadline - time.monotonic()) > 0:
            _, ready, _ = select.select([], list(waiting), [], left)
            for fd in ready:
                s, address = waiting.pop(fd)
                if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                    answered.add(address)
    finally:
        for s, _ in pending.values():
            s.close()
    return answered


def _until_all_answer(addresses: dict[str, str], limit: float) -> float | None:
    started = time.perf_counter()
    left = dict(addresses)
    while time.perf_counter() - started < limit:
        for address in _answering(left):
            del left[address]
        if not left:
            return time.perf_counter() - started
        time.sleep(0.001)
    return None


def measure_bridge_heal(bench: Bench, count: int = 10) -> dict[str, Any]:
    from pyroute2 import IPRoute

    tool = bench.tool("composer")
    assert tool is not None
    stack = bench.stack(tool, httpd_stack(count))
    with bench.running(stack):
        (bridge,) = _bridges(bench, stack.project)
        rows = json.loads(bench.command(stack, "ps", "--format", "json"))
        addresses = {}
        for row in rows:
            found = row.get("Addresses") or list((row.get("Networks") or {}).values())
            addresses[str(found[0]).split("/")[0]] = bridge
        if _until_all_answer(addresses, 5) is None:
            raise RuntimeError("the stack's containers do not answer before the bridge goes")
        with IPRoute() as ipr:
            index = ipr.link_lookup(ifname=bridge)[0]
            # timed from the request: the kernel takes ~40 ms to remove a bridge, and the
            # supervisor, told at its start, may have made it again when the call returns
            started = time.perf_counter()
            ipr.link("del", index=index)
        heal = _until_all_answer(addresses, HEAL_WAIT)
        took = None if heal is None else time.perf_counter() - started
    if took is None:
        return {"containers": count, "supported": False,
                "note": f"{NOT_SUPPORTED}: not every container answered within 10 s"}  # fmt: skip
    return {"containers": count, "supported": True, "seconds": round(took, 3)}


def _our_processes(bench: Bench, stack: Stack) -> dict[str, list[int]]:
    run = bench.root / "run"
    supervisor = running_pid(run / f"{stack.project}.lock")
    server = running_pid(run / "cli.lock")
    return {
        "supervisor": [supervisor] if supervisor else [],
        "fork server": [server] if server else [],
        "shims": sorted({parent(pid) for pid in bench.pids(stack).values()}),
    }


def measure_idle_cpu(bench: Bench, count: int = 200, seconds: float = 10) -> dict[str, Any]:
    tool = bench.tool("composer")
    assert tool is not None
    stack = bench.stack(tool, {
        "front": {"command": HTTPD, "ports": ["127.0.0.1::80"]},
        "idle": {"command": "sleep 3600", "deploy": {"replicas": count - 1}},
    })  # fmt: skip
    with bench.running(stack) as up_took:
        processes = _our_processes(bench, stack)
        running = len(processes["shims"])  # one shim per running container
        time.sleep(3)
        groups = {name: pids for name, pids in processes.items() if pids}
        before = {name: sum(cpu_seconds(p) for p in pids) for name, pids in groups.items()}
        started = time.perf_counter()
        time.sleep(seconds)
        elapsed = time.perf_counter() - started
        after = {name: sum(cpu_seconds(p) for p in pids) for name, pids in groups.items()}
    percent = {name: round(100 * (after[name] - before[name]) / elapsed, 3) for name in groups}
    result: dict[str, Any] = {"containers": running, "up_s": round(up_took, 3),
                              "window_s": round(elapsed, 2), "cpu_percent": percent}  # fmt: skip
    if not processes["supervisor"]:
        result["note"] = "no supervisor ran for the stack"
    return result


def _weigh(pids: list[int]) -> dict[str, int]:
    weights = [memory_kb(pid) for pid in pids]
    return {"count": len(pids), "pss_kb": sum(w["pss"] for w in weights),
            "rss_kb": sum(w["rss"] for w in weights)}  # fmt: skip


def measure_memory(bench: Bench, count: int = 50) -> dict[str, Any]:
    result: dict[str, Any] = {"containers": count}
    for tool in bench.tools:
        stack = bench.stack(tool, httpd_stack(count, publish=True))
        with bench.running(stack):
            time.sleep(1)
            if tool.name == "composer":
                groups = {k: _weigh(v) for k, v in _our_processes(bench, stack).items()}
            else:
                groups = {"shims": _weigh(sorted({parent(p) for p in bench.pids(stack).values()}))}
                if tool.name == "docker-compose":
                    groups["daemons"] = _weigh(pids_named("dockerd") + pids_named("containerd"))
        all_pss = sum(g["pss_kb"] for g in groups.values())
        all_rss = sum(g["rss_kb"] for g in groups.values())
        result[tool.name] = {
            "processes": groups,
            "per_container_pss_mib": round(all_pss / count / 1024, 3),
            "per_container_rss_mib": round(all_rss / count / 1024, 3),
            "per_container_shim_pss_mib": round(groups["shims"]["pss_kb"] / count / 1024, 3),
            "per_container_shim_rss_mib": round(groups["shims"]["rss_kb"] / count / 1024, 3),
        }
    return result


# -- the run ---------------------------------------------------------------------------------


def _answers(argv: list[str]) -> bool:
    try:
        return subprocess.run(argv, capture_output=True, timeout=20, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def find_tools(bench: Bench, peers: bool) -> None:
    """composer, with its image imported into the bench's root; the peers that can run."""
    script = REPO / "examples" / "busybox-image.sh"
    subprocess.run([str(script)], env=bench.env, check=True, capture_output=True)
    bench.tools.append(Tool("composer", "busybox:local"))
    # The state root's fork server, as a user's first command starts it for the next ones.
    (bench.root / "run").mkdir(exist_ok=True)
    subprocess.run([str(COMPOSER), "version"], env=bench.env, check=True, capture_output=True)
    deadline = time.monotonic() + 20
    while not (bench.root / "run" / "cli.sock").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    if not peers:
        return
    if not shutil.which("docker-compose"):
        bench.notes.append("docker-compose: not installed")
    elif not _answers(["docker", "info"]):
        bench.notes.append("docker-compose: no dockerd answers")
    elif not _answers(["docker", "image", "inspect", "busybox:local"]):
        bench.notes.append("docker-compose: no image busybox:local (setup-peers.sh)")
    else:
        bench.tools.append(Tool("docker-compose", "busybox:local"))
    if not shutil.which("podman-compose") or not shutil.which("podman"):
        bench.notes.append("podman-compose: not installed")
    elif not _answers(["podman", "image", "exists", "localhost/busybox:latest"]):
        bench.notes.append("podman-compose: no image localhost/busybox:latest (setup-peers.sh)")
    else:
        bench.tools.append(Tool("podman-compose", "localhost/busybox:latest"))


def _version(argv: list[str], marker: str = "") -> str:
    """The first version number in the output of `argv` (after `marker`, when given)."""
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        out = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
        text = out.stdout + out.stderr
        found = re.search(r"\d+\.\d+[\w.+~-]*", text[text.find(marker) :] if marker else text)
        return found[0] if found else ""
    return ""


PEERS = ("docker-compose", "podman-compose")


def _row(label: str, figures: dict[str, float | str | None], target: str, unit: str) -> list[str]:
    ours = figures.get("composer")
    cells = [label, _cell(ours, unit), _cell(figures.get(UNSERVED), unit)]
    for peer in PEERS:
        theirs = figures.get(peer)
        cell = _cell(theirs, unit)
        if isinstance(theirs, float) and isinstance(ours, float) and ours > 0:
            cell += f" ({theirs / ours:.1f}x)"
        cells.append(cell)
    cells.append(target)
    return cells


def _cell(value: float | str | None, unit: str) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    return f"{value:.3f} {unit}" if unit == "s" else f"{value:.2f} {unit}"


def table(results: dict[str, Any]) -> list[list[str]]:
    rows = [["measure", "composer", UNSERVED, *(f"{p} (x composer)" for p in PEERS), "target"]]
    for count, targets in ((10, "0.5"), (50, "1.0")):
        found = results.get(f"up_down_{count}")
        if found:
            for verb in ("up", "down"):
                figures = {k: v["median_s"] for k, v in found[verb].items()}
                verb_line = "up -d" if verb == "up" else "down -t 0"
                rows.append(_row(f"{verb_line}, {count} services", figures, f"≤ {targets} s", "s"))
    if "restart" in results:
        figures = {k: v.get("median_s", NOT_SUPPORTED) for k, v in results["restart"].items()}
        rows.append(_row("restart of a killed container", figures, "≤ 0.1 s", "s"))
    if "bridge_heal" in results:
        heal = results["bridge_heal"]
        figures = {"composer": heal.get("seconds", NOT_SUPPORTED)}
        rows.append(_row("bridge deleted → all reachable", figures, "≤ 1 s", "s"))
    if "idle_cpu" in results:
        cpu = results["idle_cpu"]["cpu_percent"]
        figures = {"composer": cpu.get("supervisor", "no supervisor")}
        rows.append(_row("supervisor idle CPU, 200 containers", figures, "< 1 %", "%"))
    if "memory" in results:
        memory = results["memory"]
        figures = {k: memory[k]["per_container_pss_mib"] for k in ("composer", *PEERS)
                   if k in memory}  # fmt: skip
        rows.append(_row("memory per container at 50 (PSS)", figures, "≤ 2 MB", "MiB"))
    return rows


def main() -> None:
    measures = ("up_down_10", "up_down_50", "restart", "bridge_heal", "idle_cpu", "memory")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one run each, fewer restarts")
    parser.add_argument(
        "--only",
        action="append",
        choices=measures,
        metavar="NAME",
        help=f"run only this measure (repeatable): {', '.join(measures)}",
    )
    parser.add_argument("--no-peers", action="store_true", help="composer alone")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("stack_bench: run as root")
    runs = 1 if args.quick else 3
    chosen = args.only or list(measures)
    bench = Bench(Path(tempfile.mkdtemp(prefix="stack-bench-")), [])
    functions: dict[str, Callable[[], dict[str, Any]]] = {
        "up_down_10": lambda: measure_up_down(bench, 10, runs),
        "up_down_50": lambda: measure_up_down(bench, 50, runs),
        "restart": lambda: measure_restart(bench, 2 if args.quick else 5),
        "bridge_heal": lambda: measure_bridge_heal(bench),
        "idle_cpu": lambda: measure_idle_cpu(bench),
        "memory": lambda: measure_memory(bench),
    }
    results: dict[str, Any] = {}
    load_before = os.getloadavg()
    try:
        find_tools(bench, not args.no_peers)
        for name in measures:
            if name in chosen:
                print(f"measuring {name} ...", file=sys.stderr, flush=True)
                try:
                    results[name] = functions[name]()
                except Exception as exc:  # the other measures still run; the JSON says why
                    results[name] = {"error": str(exc)}
                    bench.notes.append(f"{name} failed: {exc}")
                    bench.down_all()
    finally:
        bench.cleanup()
    document = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "command": " ".join([".venv/bin/python", "bench/stack_bench.py", *sys.argv[1:]]),
        "machine": {
            "cpus": os.cpu_count(),
            "kernel": Path("/proc/sys/kernel/osrelease").read_text().strip(),
            "python": sys.version.split()[0],
            # Other work on the machine shows here: the figures are worth what it was.
            "load_average_1min_before_after": [load_before[0], os.getloadavg()[0]],
        },
        "versions": {
            "docker-compose": _version(["docker-compose", "version", "--short"]),
            "docker": _version(["docker", "version", "--format", "{{.Server.Version}}"]),
            "podman-compose": _version(["podman-compose", "version"], "podman-compose"),
            "podman": _version(["podman", "--version"]),
        }
        if len(bench.tools) > 1
        else {},
        "tools": [t.name for t in bench.tools],
        "notes": bench.notes,
        **results,
    }
    rows = table({k: v for k, v in results.items() if "error" not in v})
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    for note in bench.notes:
        print(f"note: {note}")
    out = Path(__file__).with_name("results")
    out.mkdir(exist_ok=True)
    (out / "stack_bench.json").write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    main()
