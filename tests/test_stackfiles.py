"""Which files of a directory `composer serve` applies, how their projects are named, and when
their content counts as changed (pure: files only)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from composer.errors import StackError
from composer.stackfiles import (
    StackSource,
    directory_sources,
    fingerprint,
    load_source,
    newer_than,
    served_from,
    survey,
)
from composer.state import StackRecord
from engine.clock import utc_now

SERVICE = "services:\n  app:\n    image: busybox:test\n"


def write(path: Path, text: str = SERVICE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_each_yaml_file_and_each_subdirectory_with_a_compose_file_is_a_stack(tmp_path: Path) -> None:
    write(tmp_path / "b.yml")
    write(tmp_path / "a.yaml")
    write(tmp_path / "shop" / "compose.yaml")
    write(tmp_path / "shop" / "other.yaml")
    write(tmp_path / "legacy" / "docker-compose.yml")
    found = directory_sources(tmp_path)
    assert [s.files for s in found] == [
        (tmp_path / "a.yaml",), (tmp_path / "b.yml",),
        (tmp_path / "legacy" / "docker-compose.yml",), (tmp_path / "shop" / "compose.yaml",),
    ]  # fmt: skip
    assert [s.directory for s in found] == [tmp_path, tmp_path, tmp_path / "legacy", tmp_path / "shop"]


def test_hidden_names_other_suffixes_and_directories_without_a_compose_file_are_not(tmp_path: Path) -> None:
    write(tmp_path / ".app.yaml.swp")
    write(tmp_path / ".hidden.yaml")
    write(tmp_path / "notes.txt")
    write(tmp_path / "stack.json")
    write(tmp_path / "empty" / "values.yaml")
    write(tmp_path / ".git" / "compose.yaml")
    assert directory_sources(tmp_path) == []


def test_a_top_level_file_without_name_is_named_after_the_file(tmp_path: Path) -> None:
    write(tmp_path / "My_Web.yaml")
    [source] = directory_sources(tmp_path)
    assert load_source(source, {}).project.name == "my_web"


def test_the_name_in_the_file_wins(tmp_path: Path) -> None:
    write(tmp_path / "web.yaml", "name: shop\n" + SERVICE)
    [source] = directory_sources(tmp_path)
    assert load_source(source, {}).project.name == "shop"


def test_a_subdirectory_stack_is_named_after_its_directory(tmp_path: Path) -> None:
    write(tmp_path / "shop" / "compose.yaml")
    [source] = directory_sources(tmp_path)
    assert load_source(source, {}).project.name == "shop"


def test_a_file_that_does_not_load_says_where_and_which_key(tmp_path: Path) -> None:
    path = write(tmp_path / "web.yaml", "services:\n  app:\n    imagee: busybox:test\n")
    [source] = directory_sources(tmp_path)
    with pytest.raises(StackError) as failure:
        load_source(source, {})
    assert str(failure.value.problems[0]).startswith(f"{path}:3:5: services.app.imagee: unknown key")


def test_the_fingerprint_changes_with_the_file_and_with_its_env_file(tmp_path: Path) -> None:
    path = write(tmp_path / "web.yaml")
    [source] = directory_sources(tmp_path)
    first = fingerprint(source)
    assert first == fingerprint(source)
    write(path, SERVICE + "    environment: {A: 1}\n")
    second = fingerprint(source)
    write(tmp_path / ".env", "TAG=2\n")
    assert len({first, second, fingerprint(source)}) == 3
    path.unlink()
    assert fingerprint(source) is None


def test_newer_than_compares_the_files_with_when_the_stack_was_applied(tmp_path: Path) -> None:
    path = write(tmp_path / "web.yaml")
    source = StackSource((path,), tmp_path)
    applied = utc_now()
    os.utime(path, (1.0, 1.0))
    assert not newer_than(source, applied)
    write(path)
    os.utime(path, None)
    assert newer_than(source, "2000-01-01T00:00:00Z")


def test_stacks_served_from_a_directory_are_those_of_its_files_and_subdirectories(tmp_path: Path) -> None:
    def record(*files: Path) -> StackRecord:
        return StackRecord("p", tuple(map(str, files)), str(tmp_path))

    assert served_from(record(tmp_path / "a.yaml"), tmp_path)
    assert served_from(record(tmp_path / "shop" / "compose.yaml"), tmp_path)
    assert not served_from(record(tmp_path / "shop" / "deep" / "compose.yaml"), tmp_path)
    assert not served_from(record(tmp_path.parent / "a.yaml"), tmp_path)
    assert not served_from(record(), tmp_path)


def test_survey_loads_new_content_only_and_knows_a_stack_up_from_it(tmp_path: Path) -> None:
    write(tmp_path / "good.yaml", "name: good\n" + SERVICE)
    write(tmp_path / "bad.yaml", "services: [\n")
    sources = directory_sources(tmp_path)
    seen = {s.source.key: s for s in survey(sources, {}, {}, {})}
    bad, good = seen[str(tmp_path / "bad.yaml")], seen[str(tmp_path / "good.yaml")]
    assert isinstance(bad.loaded, StackError) and not good.current
    assert good.loaded is not None and not isinstance(good.loaded, Exception)
    up = {"good": StackRecord("good", (str(tmp_path / "good.yaml"),), str(tmp_path), "2999-01-01T00:00:00Z")}
    [again] = [s for s in survey(sources, {}, up, {}) if s.source.key == good.source.key]
    assert again.current
    known = {good.source.key: good.fingerprint}
    [unchanged] = [s for s in survey(sources, known, {}, {}) if s.source.key == good.source.key]
    assert unchanged.loaded is None
