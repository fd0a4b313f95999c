"""Several -f files merge with compose's rules: later files win, collections combine."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import Load, Write

BASE = """
services:
  web:
    image: busybox
    command: ["httpd", "-f"]
    environment: [A=1, B=2]
    labels: {tier: front}
    ports: ["8080:80"]
    volumes: ["./a:/data", "cache:/cache"]
    dns: [1.1.1.1]
    depends_on: [db]
    ulimits: {nofile: {soft: 1, hard: 2}}
  db:
    image: postgres
volumes:
  cache: {}
"""


def test_later_file_overrides_scalars_and_merges_maps(write: Write, load: Load) -> None:
    write("compose.yaml", BASE)
    write(
        "override.yaml",
        """
        services:
          web:
            image: busybox:new
            environment: {B: "3", C: "4"}
            labels: [owner=me]
        """,
    )
    web = load("compose.yaml", "override.yaml").project.services["web"]
    assert web.image == "busybox:new"
    assert web.environment == {"A": "1", "B": "3", "C": "4"}
    assert web.labels == {"tier": "front", "owner": "me"}


def test_commands_are_replaced_not_appended(write: Write, load: Load) -> None:
    write("compose.yaml", BASE)
    write("override.yaml", "services:\n  web:\n    command: sleep 1\n")
    assert load("compose.yaml", "override.yaml").project.services["web"].command == ["sleep", "1"]


def test_sequences_are_appended_without_duplicates(write: Write, load: Load) -> None:
    write("compose.yaml", BASE)
    write(
        "override.yaml",
        "services:\n  web:\n    dns: [1.1.1.1, 9.9.9.9]\n    ports: ['8080:80', '9090:90']\n",
    )
    web = load("compose.yaml", "override.yaml").project.services["web"]
    assert web.dns == ["1.1.1.1", "9.9.9.9"]
    assert [(p.published, p.target) for p in web.ports or []] == [("8080", 80), ("9090", 90)]


def test_volumes_merge_by_target(write: Write, load: Load, tmp_path: Path) -> None:
    write("compose.yaml", BASE)
    write("override.yaml", "services:\n  web:\n    volumes: ['./b:/data:ro']\n")
    web = load("compose.yaml", "override.yaml").project.services["web"]
    mounts = {m.target: (m.source, m.read_only) for m in web.volumes or []}
    assert mounts == {"/data": (str(tmp_path / "b"), True), "/cache": ("cache", None)}


def test_depends_on_list_and_map_forms_merge(write: Write, load: Load) -> None:
    write("compose.yaml", BASE)
    write(
        "override.yaml",
        "services:\n  web:\n    depends_on:\n"
        "      db: {condition: service_healthy, required: false}\n",
    )
    dep = (load("compose.yaml", "override.yaml").project.services["web"].depends_on or {})["db"]
    assert (dep.condition, dep.required) == ("service_healthy", False)


def test_reset_tag_removes_a_value(write: Write, load: Load) -> None:
    write("compose.yaml", BASE)
    write(
        "override.yaml",
        "services:\n  web:\n    ports: !reset []\n    environment:\n      A: !reset\n",
    )
    web = load("compose.yaml", "override.yaml").project.services["web"]
    assert web.ports is None
    assert web.environment == {"B": "2"}


def test_override_tag_replaces_instead_of_merging(write: Write, load: Load) -> None:
    write("compose.yaml", BASE)
    write("override.yaml", "services:\n  web:\n    labels: !override {only: this}\n")
    assert load("compose.yaml", "override.yaml").project.services["web"].labels == {"only": "this"}


def test_ulimit_entries_are_replaced_whole(write: Write, load: Load) -> None:
    write("compose.yaml", BASE)
    write("override.yaml", "services:\n  web:\n    ulimits: {nofile: 5}\n")
    limits = load("compose.yaml", "override.yaml").project.services["web"].ulimits or {}
    assert (limits["nofile"].soft, limits["nofile"].hard) == (5, 5)


def test_override_file_paths_resolve_against_the_project_directory(
    write: Write,
    load: Load,
    tmp_path: Path,
) -> None:
    write("compose.yaml", BASE)
    write("sub/override.yaml", "services:\n  web:\n    volumes: ['./other:/other']\n")
    web = load("compose.yaml", "sub/override.yaml").project.services["web"]
    assert str(tmp_path / "other") in {m.source for m in web.volumes or []}


def test_a_file_can_add_a_service(write: Write, load: Load) -> None:
    write("compose.yaml", BASE)
    write("override.yaml", "services:\n  cache:\n    image: redis\n")
    assert set(load("compose.yaml", "override.yaml").project.services) == {"web", "db", "cache"}
