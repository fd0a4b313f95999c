"""Project name, profiles and the defaults compose fills in."""

from __future__ import annotations

from pathlib import Path

import pytest

from composer.errors import StackError, UsageError
from tests.conftest import Load, Write, problems_of

ONE = "services:\n  web:\n    image: busybox\n"


def test_project_name_precedence(write: Write, load: Load) -> None:
    write("compose.yaml", "name: fromfile\n" + ONE)
    assert load("compose.yaml").project.name == "fromfile"
    env = {"COMPOSE_PROJECT_NAME": "fromenv"}
    assert load("compose.yaml", environ=env).project.name == "fromenv"
    assert load("compose.yaml", environ=env, project_name="fromflag").project.name == "fromflag"


def test_project_name_defaults_to_the_directory_normalised(write: Write, tmp_path: Path) -> None:
    from composer.config.loader import LoadOptions, load_stack

    write("My.App Dir/compose.yaml", ONE)
    stack = load_stack(LoadOptions(files=(tmp_path / "My.App Dir/compose.yaml",), environ={}))
    assert stack.project.name == "myappdir"


@pytest.mark.parametrize("bad", ["Upper", "-dash", "has space", "dot.ted"])
def test_invalid_project_name_from_flag_is_refused(write: Write, load: Load, bad: str) -> None:
    write("compose.yaml", ONE)
    with pytest.raises(UsageError, match="invalid"):
        load("compose.yaml", project_name=bad)


def test_invalid_project_name_in_file_names_the_line(write: Write, load: Load) -> None:
    write("compose.yaml", "name: Bad_Name\n" + ONE)
    (line,) = problems_of(load, "compose.yaml")
    assert "compose.yaml:1:7: name: 'Bad_Name' is not a valid project name" in line


def test_services_with_inactive_profiles_are_left_out(write: Write, load: Load) -> None:
    write(
        "compose.yaml",
        """
        services:
          web: {image: busybox}
          debug: {image: busybox, profiles: [debug]}
          tools: {image: busybox, profiles: [tools, debug]}
        """,
    )
    assert set(load("compose.yaml").project.services) == {"web"}
    assert set(load("compose.yaml", profiles=("tools",)).project.services) == {"web", "tools"}
    assert set(load("compose.yaml", profiles=("*",)).project.services) == {"web", "debug", "tools"}


def test_dependency_on_a_disabled_service_is_an_error(write: Write, load: Load) -> None:
    write(
        "compose.yaml",
        """
        services:
          web: {image: busybox, depends_on: [debug]}
          debug: {image: busybox, profiles: [debug]}
        """,
    )
    (line,) = problems_of(load, "compose.yaml")
    assert "services.web.depends_on.debug" in line and "disabled by its profiles" in line


def test_optional_dependency_on_a_disabled_service_is_fine(write: Write, load: Load) -> None:
    write(
        "compose.yaml",
        """
        services:
          web: {image: busybox, depends_on: {debug: {condition: service_started, required: false}}}
          debug: {image: busybox, profiles: [debug]}
        """,
    )
    assert set(load("compose.yaml").project.services) == {"web"}


def test_every_service_joins_the_default_network_unless_told_otherwise(
    write: Write, load: Load
) -> None:
    write(
        "compose.yaml",
        """
        name: demo
        services:
          web: {image: busybox}
          host: {image: busybox, network_mode: host}
          back: {image: busybox, networks: [private]}
        networks:
          private: {}
          shared: {external: true}
        volumes:
          data: {}
        """,
    )
    project = load("compose.yaml").project
    assert project.services["web"].networks == {"default": None}
    assert project.services["host"].networks is None
    names = {k: n.name for k, n in project.networks.items()}
    assert names == {"default": "demo_default", "private": "demo_private", "shared": "shared"}
    assert project.volumes["data"].name == "demo_data"


def test_version_key_is_ignored_with_a_warning(write: Write, load: Load) -> None:
    write("compose.yaml", "version: '3.8'\n" + ONE)
    stack = load("compose.yaml")
    assert [w.path for w in stack.warnings] == ["version"]


def test_default_file_names_are_found_in_parent_directories(write: Write, tmp_path: Path) -> None:
    from composer.config.loader import LoadOptions, load_stack

    write("docker-compose.yml", ONE)
    (tmp_path / "deep/er").mkdir(parents=True)
    stack = load_stack(LoadOptions(environ={}, working_directory=tmp_path / "deep/er"))
    assert stack.files == (tmp_path / "docker-compose.yml",)


def test_no_stack_file_is_a_usage_error(tmp_path: Path) -> None:
    from composer.config.loader import DEFAULT_FILES, LoadOptions, load_stack

    if any((d / n).exists() for d in tmp_path.parents for n in DEFAULT_FILES):
        pytest.skip("a parent of the temporary directory holds a stack file")
    with pytest.raises(UsageError, match="no stack file found"):
        load_stack(LoadOptions(environ={}, working_directory=tmp_path))


def test_stack_name_gives_the_name_load_stack_gives_without_validating(write: Write, load: Load, tmp_path: Path) -> None:
    from composer.config.loader import LoadOptions, stack_name

    def name_of(**options: object) -> str:
        return stack_name(LoadOptions(files=(tmp_path / "compose.yaml",), working_directory=tmp_path, **options))  # type: ignore[arg-type]

    write("compose.yaml", "name: fromfile-${SUFFIX}\n" + ONE)
    assert name_of(environ={"SUFFIX": "x"}) == load("compose.yaml", environ={"SUFFIX": "x"}).project.name == "fromfile-x"
    assert name_of(environ={"COMPOSE_PROJECT_NAME": "fromenv"}) == "fromenv"
    assert name_of(environ={}, project_name="fromflag") == "fromflag"
    write("My-App/compose.yaml", ONE + "    no_such_key: 1\n")  # the models would refuse it
    assert stack_name(LoadOptions(files=(tmp_path / "My-App/compose.yaml",), environ={})) == "my-app"
    write("compose.yaml", "name: Bad_Name\n" + ONE)
    with pytest.raises(StackError) as info:
        name_of(environ={})
    assert "compose.yaml:1:7: name: 'Bad_Name' is not a valid project name" in str(info.value.problems[0])


def test_a_stack_loads_and_is_checked_without_importing_pydantic_plugin_discovery(tmp_path: Path) -> None:
    # pydantic's plugin discovery imports importlib.metadata (60-80 ms a command); composer
    # replaces it by a loader that finds no plugin. In a fresh interpreter, as `composer` runs.
    import subprocess
    import sys

    (tmp_path / "compose.yaml").write_text(ONE + "  bad:\n    image: busybox\n    imagee: x\n")
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from composer.config.loader import LoadOptions, load_stack\n"
        "from composer.errors import StackError\n"
        "try:\n"
        "    load_stack(LoadOptions(files=(Path(sys.argv[1]),), environ={}))\n"
        "except StackError as exc:\n"
        "    print(*exc.problems)\n"
        "print('importlib.metadata' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "compose.yaml")],
                          capture_output=True, text=True, check=True)  # fmt: skip
    problem, imported = done.stdout.splitlines()
    assert "services.bad.imagee: unknown key (did you mean 'image'?)" in problem
    assert imported == "False"
