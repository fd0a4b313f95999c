"""Variables reach a stack file from the environment and the project's .env, as in compose."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import Load, Write, problems_of


def test_process_environment_wins_over_dotenv(write: Write, load: Load) -> None:
    write(".env", "TAG=from-dotenv\nPORT=8000\n")
    write("compose.yaml", "services:\n  web:\n    image: nginx:${TAG}\n    ports: ['${PORT}:80']\n")
    stack = load("compose.yaml", environ={"TAG": "from-env"})
    web = stack.project.services["web"]
    assert web.image == "nginx:from-env"
    assert web.ports is not None and web.ports[0].published == "8000"


def test_env_file_option_replaces_dotenv(write: Write, load: Load, tmp_path: Path) -> None:
    write(".env", "TAG=dotenv\n")
    write("other.env", "TAG=other\n")
    write("compose.yaml", "services:\n  web:\n    image: nginx:${TAG}\n")
    stack = load("compose.yaml", env_files=(tmp_path / "other.env",))
    assert stack.project.services["web"].image == "nginx:other"


def test_values_are_cast_after_interpolation(write: Write, load: Load) -> None:
    write(
        "compose.yaml",
        """
        services:
          web:
            image: busybox
            init: ${INIT}
            scale: ${N}
            cpus: ${CPUS}
            mem_limit: ${MEM}
        """,
    )
    web = load("compose.yaml", environ={"INIT": "true", "N": "3", "CPUS": "0.5", "MEM": "64m"})
    service = web.project.services["web"]
    assert (service.init, service.scale, service.cpus, service.mem_limit) == (
        True,
        3,
        0.5,
        64 << 20,
    )


def test_dollar_dollar_is_a_literal_dollar(write: Write, load: Load) -> None:
    write("compose.yaml", "services:\n  web:\n    image: busybox\n    command: echo $$HOME\n")
    assert load("compose.yaml").project.services["web"].command == ["echo", "$HOME"]


def test_unset_variable_is_blank_with_a_warning(write: Write, load: Load) -> None:
    write("compose.yaml", "services:\n  web:\n    image: busybox\n    hostname: x${NOPE}\n")
    stack = load("compose.yaml")
    assert stack.project.services["web"].hostname == "x"
    assert any('"NOPE" is not set' in str(w) for w in stack.warnings)


def test_required_variable_missing_names_file_line_and_key(write: Write, load: Load) -> None:
    write("compose.yaml", "services:\n  web:\n    image: ${IMAGE:?set IMAGE first}\n")
    (line,) = problems_of(load, "compose.yaml")
    assert line.endswith(
        "compose.yaml:3:12: services.web.image: "
        "required variable IMAGE is missing a value: set IMAGE first"
    )


def test_keys_and_comments_are_not_interpolated(write: Write, load: Load) -> None:
    write(
        "compose.yaml",
        """
        # ${NOT_A_VARIABLE:?would fail}
        services:
          web:
            image: busybox
            labels:
              $$literal: kept
        """,
    )
    assert load("compose.yaml").project.services["web"].labels == {"$$literal": "kept"}


def test_compose_project_name_and_profiles_come_from_dotenv(write: Write, load: Load) -> None:
    write(".env", "COMPOSE_PROJECT_NAME=fromdotenv\nCOMPOSE_PROFILES=debug\n")
    write(
        "compose.yaml",
        """
        services:
          web: {image: busybox}
          tools: {image: busybox, profiles: [debug]}
        """,
    )
    stack = load("compose.yaml")
    assert stack.project.name == "fromdotenv"
    assert set(stack.project.services) == {"web", "tools"}


def test_compose_file_from_dotenv_selects_the_files(
    write: Write, load: Load, tmp_path: Path
) -> None:
    write(".env", "COMPOSE_FILE=base.yaml:extra.yaml\n")
    write("base.yaml", "services:\n  web: {image: busybox}\n")
    write("extra.yaml", "services:\n  web: {hostname: merged}\n")
    stack = load()
    assert [f.name for f in stack.files] == ["base.yaml", "extra.yaml"]
    assert stack.project.services["web"].hostname == "merged"


def test_env_file_values_are_under_environment(write: Write, load: Load) -> None:
    write("web.env", 'A=from-file\nB=from-file\nexport C="quoted value"\n')
    write(
        "compose.yaml",
        """
        services:
          web:
            image: busybox
            env_file: [web.env, {path: missing.env, required: false}]
            environment:
              B: from-stack
              D:
        """,
    )
    env = load("compose.yaml", environ={"D": "from-shell"}).project.services["web"].environment
    assert env == {"A": "from-file", "B": "from-stack", "C": "quoted value", "D": "from-shell"}


def test_missing_env_file_is_an_error_at_its_reference(write: Write, load: Load) -> None:
    write("compose.yaml", "services:\n  web:\n    image: busybox\n    env_file: nothere.env\n")
    (line,) = problems_of(load, "compose.yaml")
    assert "compose.yaml:4:15" in line and "nothere.env does not exist" in line


def test_malformed_env_file_names_its_own_line(write: Write, load: Load) -> None:
    write("bad.env", "OK=1\nNOT A KEY=2\n")
    write("compose.yaml", "services:\n  web:\n    image: busybox\n    env_file: bad.env\n")
    (line,) = problems_of(load, "compose.yaml")
    assert "bad.env:2:" in line
