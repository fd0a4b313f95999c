"""`composer serve`'s Prometheus metrics, computed afresh at each scrape from what it knows
(composer.servestatus) and served on a loopback port by prometheus-client's own server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Final

from composer import __version__
from composer.errors import ComposerError

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from prometheus_client.metrics_core import Metric

    from composer.servestatus import ServeStatus

__all__ = ["MetricsServer", "collect"]


_STACK, _SERVICE = ("project",), ("project", "service")
# Each metric: its name (a counter's without _total), whether it is a counter, its help, labels.
_METRICS: Final = (
    ("composer_stack_up", False, "1 when the stack is up on this host.", _STACK),
    ("composer_service_desired_replicas", False, "Containers the service's file asks for.",
     _SERVICE),
    ("composer_service_running_containers", False, "The service's containers that run.",
     _SERVICE),
    ("composer_service_healthy_containers", False,
     "The service's containers whose healthcheck passes.", _SERVICE),
    ("composer_service_unhealthy_containers", False,
     "The service's containers whose healthcheck fails.", _SERVICE),
    ("composer_stack_last_apply_ok", False, "1 when the last apply of the stack's file worked.",
     _STACK),
    ("composer_applies", True, "Applies of the stack's file, by result.", ("project", "result")),
    ("composer_heals", True, "Drift the stack's supervisor healed, by kind.", ("project", "kind")),
    ("composer_container_restarts", True, "Containers restarted by their restart policy.",
     _SERVICE),
    ("composer_supervisor_starts", True,
     "Times serve found the stack's supervisor not running and started it.", _STACK),
)  # fmt: skip


def collect(status: ServeStatus) -> Iterator[Metric]:
    """The metrics of every served stack (see specs/serve.md for their meaning)."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily

    info = InfoMetricFamily("composer", "The composer serving these metrics.")
    info.add_metric([], {"version": __version__})
    family = {name.removeprefix("composer_"): (CounterMetricFamily if counter
                                               else GaugeMetricFamily)(name, doc, labels=labels)
              for name, counter, doc, labels in _METRICS}  # fmt: skip
    named = set()
    for report in status.reports():
        s = report.status
        if s.project is None or s.project in named:
            continue  # its file never loaded, or the project is another file's
        project = s.project
        named.add(project)
        family["stack_up"].add_metric([project], float(report.up))
        for service, counts in report.services().items():
            for key in ("desired", "running", "healthy", "unhealthy"):
                name = (
                    "service_desired_replicas" if key == "desired" else f"service_{key}_containers"
                )
                family[name].add_metric([project, service], counts[key])
        if s.last is not None:
            family["stack_last_apply_ok"].add_metric([project], float(s.last.ok))
        family["applies"].add_metric([project, "ok"], s.applies_ok)
        family["applies"].add_metric([project, "failed"], s.applies_failed)
        for kind, count in sorted(report.heals.items()):
            family["heals"].add_metric([project, kind], count)
        for service, count in sorted(report.restarts.items()):
            family["container_restarts"].add_metric([project, service], count)
        family["supervisor_starts"].add_metric([project], s.supervisor_starts)
    yield info
    yield from family.values()


class _Collector:
    def __init__(self, status: ServeStatus) -> None:
        self.status = status

    def collect(self) -> Iterator[Metric]:
        return collect(self.status)


class MetricsServer:
    """The metrics endpoint on 127.0.0.1:`port` (any path answers), in threads of its own
    until `close`."""

    def __init__(self, status: ServeStatus, port: int) -> None:
        from prometheus_client import CollectorRegistry, start_http_server

        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Collector(status))
        try:
            self._server: WSGIServer = start_http_server(port, "127.0.0.1", registry)[0]
        except OSError as exc:
            raise ComposerError(f"metrics port 127.0.0.1:{port}: {exc.strerror} (choose "
                                "another with --metrics-port, or 0 for none)") from exc  # fmt: skip
        self.port = int(self._server.server_address[1])

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
