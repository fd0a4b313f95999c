"""`extends` and `include` reuse definitions across services and files."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import Load, Write, problems_of


def test_extends_a_service_in_the_same_file(write: Write, load: Load) -> None:
    write(
        "compose.yaml",
        """
        services:
          base:
            image: busybox
            environment: {A: "1"}
          web:
            extends: base
            environment: {B: "2"}
        """,
    )
    web = load("compose.yaml").project.services["web"]
    assert (web.image, web.environment) == ("busybox", {"A": "1", "B": "2"})


def test_extends_chains_across_files_with_paths_relative_to_each_file(
    write: Write, load: Load, tmp_path: Path
) -> None:
    write(
        "lib/base.yaml", "services:\n  root:\n    image: busybox\n    volumes: ['./data:/data']\n"
    )
    write(
        "lib/middle.yaml",
        "services:\n  mid:\n    extends: {file: base.yaml, service: root}\n    hostname: mid\n",
    )
    write(
        "compose.yaml",
        "services:\n  web:\n    extends: {file: lib/middle.yaml, service: mid}\n"
        "    volumes: ['./logs:/logs']\n",
    )
    web = load("compose.yaml").project.services["web"]
    assert web.hostname == "mid"
    sources = {m.target: m.source for m in web.volumes or []}
    assert sources == {"/data": str(tmp_path / "lib/data"), "/logs": str(tmp_path / "logs")}


def test_extends_cycle_is_an_error(write: Write, load: Load) -> None:
    write(
        "compose.yaml",
        "services:\n  a:\n    extends: b\n    image: x\n  b:\n    extends: a\n    image: y\n",
    )
    lines = problems_of(load, "compose.yaml")
    assert any("extends cycle" in line for line in lines)


def test_extends_of_an_unknown_service_names_it(write: Write, load: Load) -> None:
    write("compose.yaml", "services:\n  a:\n    extends: nosuch\n    image: x\n")
    (line,) = problems_of(load, "compose.yaml")
    assert "services.a.extends" in line and "'nosuch'" in line


def test_include_adds_the_included_resources(write: Write, load: Load, tmp_path: Path) -> None:
    write("db/compose.yaml", "services:\n  db:\n    image: postgres\n    env_file: db.env\n")
    write("db/db.env", "PGDATA=/data\n")
    write("compose.yaml", "include: [db/compose.yaml]\nservices:\n  web:\n    image: busybox\n")
    project = load("compose.yaml").project
    assert set(project.services) == {"web", "db"}
    assert project.services["db"].environment == {"PGDATA": "/data"}


def test_include_uses_its_own_dotenv(write: Write, load: Load) -> None:
    write("db/.env", "DB_IMAGE=postgres:16\n")
    write("db/compose.yaml", "services:\n  db:\n    image: ${DB_IMAGE}\n")
    write(
        "compose.yaml", "include:\n  - path: db/compose.yaml\nservices:\n  web: {image: busybox}\n"
    )
    assert load("compose.yaml").project.services["db"].image == "postgres:16"


def test_include_conflict_is_an_error(write: Write, load: Load) -> None:
    write("other.yaml", "services:\n  web:\n    image: nginx\n")
    write("compose.yaml", "include: [other.yaml]\nservices:\n  web:\n    image: busybox\n")
    (line,) = problems_of(load, "compose.yaml")
    assert "service 'web' is defined here and in the included file" in line


def test_include_cycle_is_an_error(write: Write, load: Load) -> None:
    write("a.yaml", "include: [b.yaml]\nservices: {}\n")
    write("b.yaml", "include: [a.yaml]\nservices: {}\n")
    (line,) = problems_of(load, "a.yaml")
    assert "include cycle" in line
