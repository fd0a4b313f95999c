"""The dependency graph of a stack's services: start order, stop order, and its errors.

An edge `a -> b` means `a` needs `b` first: from depends_on, links, volumes_from and
network_mode `service:b`.
"""

from __future__ import annotations

import graphlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from composer.config.problems import suggest
from composer.config.yamlio import locate
from composer.errors import Problem, StackError, format_key_path

if TYPE_CHECKING:
    from composer.config.project import Project

__all__ = ["Dependency", "DependencyGraph"]


@dataclass(frozen=True)
class Dependency:
    """`service` needs `needs` (through `via`, e.g. "depends_on")."""

    service: str
    needs: str
    via: str
    path: tuple[str | int, ...]
    required: bool = True


def _dependencies(project: Project) -> Iterator[Dependency]:
    for name, service in project.services.items():
        for target, dep in (service.depends_on or {}).items():
            yield Dependency(
                name, target, "depends_on", ("services", name, "depends_on", target), dep.required
            )
        for index, link in enumerate(service.links or []):
            yield Dependency(name, link.split(":")[0], "links", ("services", name, "links", index))
        for index, source in enumerate(service.volumes_from or []):
            if not source.startswith("container:"):
                yield Dependency(
                    name,
                    source.split(":")[0],
                    "volumes_from",
                    ("services", name, "volumes_from", index),
                )
        mode = service.network_mode or ""
        if mode.startswith("service:"):
            yield Dependency(
                name,
                mode.removeprefix("service:"),
                "network_mode",
                ("services", name, "network_mode"),
            )


class DependencyGraph:
    """Services as nodes, "needs" as edges; built only from a valid, acyclic stack.

    The order comes from the standard library's graphlib; networkx, which takes longer to
    load than a small stack takes to start (~60-110 ms), is loaded only to name every cycle
    of a stack that has one."""

    def __init__(self, needs: dict[str, list[str]]) -> None:
        self._needs = needs

    @classmethod
    def of(
        cls, project: Project, disabled: list[str] | tuple[str, ...] = (), raw: Any = None
    ) -> DependencyGraph:
        """The graph of `project`; unknown, disabled (by profiles) or cyclic dependencies are a
        StackError naming each offending key."""
        problems: list[Problem] = []
        needs: dict[str, list[str]] = {name: [] for name in project.services}
        paths: dict[tuple[str, str], tuple[str | int, ...]] = {}
        for dep in _dependencies(project):
            if dep.needs in project.services:
                if (dep.service, dep.needs) not in paths:
                    needs[dep.service].append(dep.needs)
                    paths[dep.service, dep.needs] = dep.path
                continue
            if not dep.required:
                continue
            hint: str | None
            if dep.needs in disabled:
                message = f"depends on service {dep.needs!r}, which is disabled by its profiles"
                hint = "enable one of its profiles with --profile, or set `required: false`"
            else:
                message = f"depends on service {dep.needs!r}, which is not defined"
                hint = suggest(dep.needs, project.services)
            problems.append(
                Problem(message, format_key_path(dep.path), locate(raw, dep.path), hint)
            )
        try:
            graphlib.TopologicalSorter(needs).prepare()
        except graphlib.CycleError:
            problems.extend(_cycles(needs, paths, raw))
        if problems:
            raise StackError(problems)
        return cls({name: sorted(targets) for name, targets in needs.items()})

    def needs(self, service: str) -> list[str]:
        """The services `service` directly needs, sorted."""
        return list(self._needs[service])

    def start_order(self) -> list[list[str]]:
        """Generations: each list can start in parallel once the previous ones are up."""
        sorter = graphlib.TopologicalSorter(self._needs)
        sorter.prepare()
        generations = []
        while sorter.is_active():
            ready = sorted(sorter.get_ready())
            generations.append(ready)
            sorter.done(*ready)
        return generations

    def stop_order(self) -> list[list[str]]:
        """The start order reversed: dependents stop before what they need."""
        return list(reversed(self.start_order()))


def _cycles(
    needs: dict[str, list[str]], paths: dict[tuple[str, str], tuple[str | int, ...]], raw: Any
) -> Iterator[Problem]:
    """A problem for every dependency cycle, at the key that closes it."""
    import networkx as nx

    graph = nx.DiGraph()
    graph.add_nodes_from(needs)
    graph.add_edges_from((service, target) for service, targets in needs.items()
                         for target in targets)  # fmt: skip
    for cycle in nx.simple_cycles(graph):
        members = sorted(cycle)
        first = members[0]
        path = paths[first, cycle[(cycle.index(first) + 1) % len(cycle)]]
        order = cycle[cycle.index(first) :] + cycle[: cycle.index(first)] + [first]
        yield Problem(
            f"dependency cycle between services {', '.join(members)}: " + " -> ".join(order),
            format_key_path(path),
            locate(raw, path),
        )
