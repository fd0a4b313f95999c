"""`composer config` and the CLI's conventions: output, exit codes, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from composer.cli.main import main

STACK = """\
name: demo
services:
  web:
    image: nginx
    depends_on: [api]
    profiles: [front]
  api:
    image: api:1
    volumes: ["data:/data"]
  job:
    build: ./job
volumes:
  data: {}
  cache: {}
"""


@pytest.fixture
def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("COMPOSE_PROJECT_NAME", raising=False)
    monkeypatch.delenv("COMPOSE_FILE", raising=False)
    monkeypatch.delenv("COMPOSE_PROFILES", raising=False)
    path = tmp_path / "stack.yaml"
    path.write_text(STACK)
    return path


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_stack_file_as_first_argument_works_like_f(
    stack: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    by_arg = run(capsys, "config", str(stack))
    by_flag = run(capsys, "-f", str(stack), "config")
    assert by_arg == by_flag
    assert by_arg[0] == 0 and by_arg[1].startswith("name: demo\n")


def test_default_file_name_is_found(stack: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "config", "--services")
    assert code == 0 and out.split() == ["api", "job"]


def test_services_in_start_order_with_profiles(
    stack: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, out, _ = run(capsys, "--profile", "front", "config", "--services")
    assert out.split() == ["api", "job", "web"]


def test_json_format(stack: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "config", "--format", "json")
    assert code == 0 and json.loads(out)["volumes"]["data"] == {"name": "demo_data"}


def test_volumes_profiles_and_images(stack: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "config", "--volumes")[1].split() == ["data", "cache"]
    assert run(capsys, "config", "--profiles")[1].split() == ["front"]
    assert run(capsys, "config", "--images")[1].split() == ["api:1", "demo-job"]


def test_quiet_prints_nothing_for_a_valid_stack(
    stack: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "config", "-q") == (0, "", "")


def test_hash_of_one_all_and_unknown_services(
    stack: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "config", "--hash", "api")
    name, digest = out.split()
    assert (code, name, len(digest)) == (0, "api", 64)
    code, out, _ = run(capsys, "config", "--hash", "*")
    assert [line.split()[0] for line in out.splitlines()] == ["api", "job"]
    code, _, err = run(capsys, "config", "--hash", "nope")
    assert code == 2 and "no service 'nope'" in err


def test_invalid_stack_exits_1_with_every_problem(
    stack: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stack.write_text("services:\n  web:\n    imag: x\n  db:\n    image: y\n    ports: [bad]\n")
    code, out, err = run(capsys, "config")
    assert code == 1 and out == ""
    lines = err.splitlines()
    assert lines[0].startswith("error: ") and "stack.yaml:3:5: services.web.imag" in lines[0]
    assert any("services.web.imag: unknown key (did you mean 'image'?)" in x for x in lines)
    assert any("services.db.ports[0]" in x for x in lines)
    assert lines[-1] == f"{len(lines) - 1} errors"


def test_warnings_go_to_stderr(stack: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stack.write_text("version: '3'\nservices:\n  web: {image: x}\n")
    code, out, err = run(capsys, "config", "-q")
    assert code == 0 and out == ""
    assert err.startswith("warning: ") and "version" in err


def test_missing_file_is_usage_error_exit_2(
    stack: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "-f", "nothere.yaml", "config")
    assert code == 2 and "nothere.yaml does not exist" in err


def test_unknown_option_is_usage_error_exit_2(
    stack: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "config", "--no-such-flag")
    assert code == 2 and "No such option" in err


def test_broken_yaml_never_shows_a_traceback(
    stack: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stack.write_text("services: [\n")
    code, _, err = run(capsys, "config")
    assert code == 1 and "Traceback" not in err and "invalid YAML" in err


@pytest.mark.parametrize("command", [[], ["config"], ["version"]])
def test_every_command_has_help(capsys: pytest.CaptureFixture[str], command: list[str]) -> None:
    code, out, _ = run(capsys, *command, "--help")
    assert code == 0 and "Usage:" in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from composer import __version__

    assert run(capsys, "version") == (0, f"composer version {__version__}\n", "")


def test_console_script_runs_as_a_program(stack: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "composer", "config", "--services"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (done.returncode, done.stdout.split()) == (0, ["api", "job"])
