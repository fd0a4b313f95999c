"""What `composer serve` answers on its socket and its metrics endpoint, from its records and
the supervisors' events files (no container: a state root of files only)."""

from __future__ import annotations

import json
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from composer import __version__
from composer.metrics import collect
from composer.servestatus import ApplyResult, ServeStatus, StackStatus
from composer.settings import Settings

EVENTS = [
    {"event": "watch", "container": "shop-web-1"},
    {"event": "heal", "container": "shop_default", "what": "bridge re-created"},
    {"event": "heal", "container": "shop-web-1", "what": "re-attached", "interfaces": ["eth0"]},
    {"event": "heal", "container": "shop-web-1", "what": "hosts file rewritten"},
    {"event": "heal", "container": "shop-web-1", "what": "hosts file rewritten"},
    {"event": "heal-failed", "container": "shop-db-1", "reason": "no space"},
    {"event": "restart", "container": "shop-web-1", "attempt": 1, "delay": 0.1},
]


def status_with_a_stack(tmp_path: Path) -> ServeStatus:
    status = ServeStatus(Settings(tmp_path))
    result = ApplyResult(True, "2026-01-01T00:00:00Z", 1.5, "applied: shop-web-1 created",
                         actions=(("shop-web-1", "create"),))  # fmt: skip
    status.put(StackStatus("/srv/shop.yaml", ("/srv/shop.yaml",), "/srv", "shop",
                           (("web", 2), ("db", 1)), result, applies_ok=3, applies_failed=1))  # fmt: skip
    (tmp_path / "run").mkdir()
    lines = [json.dumps({"time": "2026-01-01T00:00:00Z", **e}) for e in EVENTS]
    (tmp_path / "run" / "shop.events").write_text("\n".join(lines) + '\n{"event": "he')
    return status


def test_the_socket_answers_stacks_serve_and_refuses_anything_else(tmp_path: Path) -> None:
    status = status_with_a_stack(tmp_path)
    status.about = {"version": __version__}
    [stack] = status.answer({"get": "stacks"})["stacks"]
    assert stack["project"] == "shop" and stack["up"] is False and stack["containers"] == []
    assert stack["services"]["web"] == {"desired": 2, "running": 0, "healthy": 0, "unhealthy": 0}
    assert stack["last_apply"]["result"] == "ok" and stack["last_apply"]["actions"] == {"shop-web-1": "create"}
    assert stack["applies"] == {"ok": 3, "failed": 1}
    assert stack["heals"] == {"bridge": 1, "veth": 1, "hosts": 2, "failed": 1}
    assert [e["event"] for e in stack["recent_heals"]] == ["heal"] * 4 + ["heal-failed"]
    assert status.answer({"get": "serve"}) == {"version": __version__}
    assert "error" in status.answer({"get": "secrets"}) and "error" in status.answer(["get"])


def test_events_are_counted_once_however_often_asked(tmp_path: Path) -> None:
    status = status_with_a_stack(tmp_path)
    status.reports()
    with open(tmp_path / "run" / "shop.events", "a") as f:  # the half line completed, and one more
        f.write('al", "container": "x", "what": "container re-created"}\n')
    [report] = status.reports()
    assert report.heals == {"bridge": 1, "veth": 1, "hosts": 2, "failed": 1, "container": 1}
    assert report.restarts == {"": 1}  # its container is gone: no service to name


def test_the_metrics_name_each_stack_and_service(tmp_path: Path) -> None:
    registry = CollectorRegistry(auto_describe=False)

    class Collector:
        def collect(self):  # type: ignore[no-untyped-def]
            return collect(status_with_a_stack(tmp_path))

    registry.register(Collector())  # type: ignore[arg-type]
    text = generate_latest(registry).decode()
    for line in (
        f'composer_info{{version="{__version__}"}} 1.0',
        'composer_stack_up{project="shop"} 0.0',
        'composer_service_desired_replicas{project="shop",service="web"} 2.0',
        'composer_service_running_containers{project="shop",service="db"} 0.0',
        'composer_stack_last_apply_ok{project="shop"} 1.0',
        'composer_applies_total{project="shop",result="ok"} 3.0',
        'composer_applies_total{project="shop",result="failed"} 1.0',
        'composer_heals_total{kind="hosts",project="shop"} 2.0',
        'composer_container_restarts_total{project="shop",service=""} 1.0',
        'composer_supervisor_starts_total{project="shop"} 0.0',
    ):
        assert line in text.splitlines(), line
