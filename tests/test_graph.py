"""The dependency graph: start order in generations, stop order reversed, errors named."""

from __future__ import annotations

from pathlib import Path

import pytest

from composer.config.loader import LoadOptions, load_stack
from composer.errors import StackError
from tests.conftest import Load, Write, problems_of


def test_start_order_is_generations_of_parallel_services(write: Write, load: Load) -> None:
    write(
        "compose.yaml",
        """
        services:
          db: {image: x}
          cache: {image: x}
          api: {image: x, depends_on: [db, cache]}
          worker: {image: x, links: ["db:database"]}
          web: {image: x, depends_on: {api: {condition: service_healthy}}}
          sidecar: {image: x, network_mode: "service:web"}
          backup: {image: x, volumes_from: ["db:ro"]}
        """,
    )
    graph = load("compose.yaml").graph
    assert graph.start_order() == [
        ["cache", "db"],
        ["api", "backup", "worker"],
        ["web"],
        ["sidecar"],
    ]
    assert graph.stop_order()[0] == ["sidecar"]
    assert graph.needs("api") == ["cache", "db"]


def test_cycle_names_every_member(write: Write, load: Load) -> None:
    write(
        "compose.yaml",
        """
        services:
          a: {image: x, depends_on: [b]}
          b: {image: x, depends_on: [c]}
          c: {image: x, depends_on: [a]}
          d: {image: x, depends_on: [a]}
        """,
    )
    (line,) = problems_of(load, "compose.yaml")
    assert "dependency cycle between services a, b, c: a -> b -> c -> a" in line
    assert "services.a.depends_on.b" in line


def test_unknown_dependency_suggests_a_close_name(write: Write, load: Load) -> None:
    write(
        "compose.yaml",
        "services:\n  web: {image: x, depends_on: [datbase]}\n  database: {image: y}\n",
    )
    (line,) = problems_of(load, "compose.yaml")
    assert "services.web.depends_on.datbase" in line
    assert "which is not defined (did you mean 'database'?)" in line


def test_network_mode_of_an_unknown_service_is_an_error(write: Write, load: Load) -> None:
    write("compose.yaml", "services:\n  web: {image: x, network_mode: 'service:nope'}\n")
    (line,) = problems_of(load, "compose.yaml")
    assert "services.web.network_mode" in line and "'nope'" in line


def test_a_self_dependency_is_a_cycle(write: Write, load: Load) -> None:
    write("compose.yaml", "services:\n  web: {image: x, depends_on: [web]}\n")
    with pytest.raises(StackError, match="cycle"):
        load("compose.yaml")


def test_graph_of_a_stack_without_dependencies_is_one_generation(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text("services:\n  a: {image: x}\n  b: {image: x}\n")
    stack = load_stack(LoadOptions(files=(tmp_path / "compose.yaml",), environ={}))
    assert stack.graph.start_order() == [["a", "b"]]
