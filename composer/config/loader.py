"""Loading a stack: files and variables in, one validated, normalised Project out.

The steps follow docker compose: find the files and the `.env`, read each file (interpolated,
includes and extends resolved, paths absolute), merge them in order, report unsupported keys,
fold env files into `environment`, apply profiles, validate into models, complete defaults,
check references and the dependency graph.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from composer.config.environment import read_env_file
from composer.config.files import FileReader
from composer.config.merge import key_value_map, merge
from composer.config.support import drop_unsupported
from composer.config.types import PROJECT_NAME
from composer.config.yamlio import MarkedMap, MarkedSeq, locate
from composer.errors import Problem, StackError, UsageError

if TYPE_CHECKING:  # the models load with load_stack only: stack_name does without them
    from composer.config.project import Project
    from composer.graph import DependencyGraph

__all__ = ["DEFAULT_FILES", "LoadOptions", "Stack", "load_stack", "stack_name"]

DEFAULT_FILES = (
    "compose.yaml",
    "compose.yml",
    "docker-compose.yaml",
    "docker-compose.yml",
    "stack.yaml",
)


@dataclass(frozen=True)
class LoadOptions:
    """What the command line says about where the stack is and how to read it."""

    files: tuple[Path, ...] = ()
    project_name: str | None = None
    project_directory: Path | None = None
    env_files: tuple[Path, ...] = ()
    profiles: tuple[str, ...] = ()
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    working_directory: Path = field(default_factory=Path.cwd)


@dataclass(frozen=True)
class Stack:
    """A loaded stack: the project model and what was learnt while loading it."""

    project: Project
    files: tuple[Path, ...]
    project_directory: Path
    profiles: tuple[str, ...]
    disabled: tuple[str, ...]
    warnings: tuple[Problem, ...]
    graph: DependencyGraph
    raw: MarkedMap = field(repr=False, compare=False)


def _read(options: LoadOptions) -> tuple[list[Path], Path, dict[str, str], FileReader, MarkedMap]:
    """The stack's files, project directory and variables, and the files read and merged."""
    cwd = options.working_directory
    environ = dict(options.environ)
    files, project_dir = _locate_files(options, environ, cwd)
    variables = _variables(options, environ, project_dir, cwd)
    reader = FileReader(variables)
    tree = MarkedMap()
    for path in files:
        tree = merge(tree, reader.read(path, project_dir))
    return files, project_dir, variables, reader, tree


def stack_name(options: LoadOptions) -> str:
    """The project name `load_stack` gives the stack, from its files read but not validated
    (what a command that only finds the stack's containers needs, such as `down`: it loads
    no models, ~100 ms less); StackError when the files cannot be read."""
    _, project_dir, variables, reader, tree = _read(options)
    if reader.problems:
        raise StackError(list(dict.fromkeys(reader.problems)))
    name = _project_name(options, variables, tree, project_dir)
    if not PROJECT_NAME.fullmatch(name):
        raise StackError([Problem(
            f"{name!r} is not a valid project name: use lower-case letters, digits, '-' and '_', "
            "starting with a letter or digit", "name", locate(tree, ("name",)),
        )])  # fmt: skip
    return name


def load_stack(options: LoadOptions) -> Stack:
    from pydantic import ValidationError

    from composer.config.normalize import check_references, complete
    from composer.config.problems import problems_from
    from composer.config.project import Project
    from composer.graph import DependencyGraph

    files, project_dir, variables, reader, tree = _read(options)
    problems = list(dict.fromkeys(reader.problems))  # a file read twice reports once
    warnings = list(dict.fromkeys(reader.warnings)) + [
        Problem(f'the variable "{name}" is not set; it defaults to a blank string', "", where)
        for name, where in reader.unset.items()
    ]
    errors, ignored = drop_unsupported(tree)
    problems += errors
    warnings += ignored

    name = _project_name(options, variables, tree, project_dir)
    problems += _fold_env_files(tree, variables)
    profiles = _profiles(options, variables)
    disabled = _apply_profiles(tree, profiles)

    data = dict(tree)
    data["name"] = name
    try:
        project = Project.model_validate(data)
    except ValidationError as exc:
        invalid = _not_yet_reported(problems_from(exc, Project, tree), problems)
        raise StackError(problems + invalid) from None
    if problems:
        raise StackError(problems)
    project = complete(project)
    problems = check_references(project, tree)
    try:
        graph = DependencyGraph.of(project, disabled, tree)
    except StackError as exc:
        problems += exc.problems
    if problems:
        raise StackError(problems)
    return Stack(
        project=project,
        files=tuple(files),
        project_directory=project_dir,
        profiles=profiles,
        disabled=tuple(disabled),
        warnings=tuple(warnings),
        graph=graph,
        raw=tree,
    )


def _not_yet_reported(problems: list[Problem], reported: list[Problem]) -> list[Problem]:
    """Problems about keys not already reported on (a failed interpolation leaves a value
    that the model then refuses too: one error for it is enough)."""
    paths = [p.path for p in reported if p.path]
    return [
        p
        for p in problems
        if not any(p.path == q or p.path.startswith((q + ".", q + "[")) for q in paths)
    ]


def _locate_files(
    options: LoadOptions, environ: dict[str, str], cwd: Path
) -> tuple[list[Path], Path]:
    """The stack files (from -f, COMPOSE_FILE, or the default names) and the project directory."""
    if options.files:
        files = [(cwd / f).absolute() for f in options.files]
    else:
        start = (cwd / options.project_directory) if options.project_directory else cwd
        compose_file = environ.get("COMPOSE_FILE") or _dotenv_value(start, "COMPOSE_FILE", environ)
        if compose_file:
            files = [(start / f).absolute() for f in compose_file.split(os.pathsep) if f]
        else:
            files = _discover(start)
    for path in files:
        if not path.is_file():
            raise UsageError(f"stack file {path} does not exist")
    project_dir = (
        (cwd / options.project_directory).absolute()
        if options.project_directory
        else files[0].parent
    )
    return [Path(os.path.normpath(f)) for f in files], Path(os.path.normpath(project_dir))


def _discover(start: Path) -> list[Path]:
    """The first default-named file in `start` or, as compose does, in a parent of it."""
    for directory in (start, *start.absolute().parents):
        for name in DEFAULT_FILES:
            if (directory / name).is_file():
                return [directory / name]
    raise UsageError(
        f"no stack file found in {start} or its parents: name one with -f, or create "
        f"{' / '.join(DEFAULT_FILES)}"
    )


def _dotenv_value(directory: Path, name: str, environ: dict[str, str]) -> str | None:
    path = directory / ".env"
    if not path.is_file():
        return None
    return read_env_file(path, environ.get).get(name)


def _variables(
    options: LoadOptions, environ: dict[str, str], project_dir: Path, cwd: Path
) -> dict[str, str]:
    """Interpolation variables: the process environment wins over the env files."""
    if options.env_files:
        paths = [(cwd / p).absolute() for p in options.env_files]
        for path in paths:
            if not path.is_file():
                raise UsageError(f"env file {path} does not exist")
    else:
        paths = [p for p in (project_dir / ".env",) if p.is_file()]
    variables: dict[str, str] = {}
    for path in paths:
        variables.update(read_env_file(path, lambda k: environ.get(k, variables.get(k))))
    variables.update(environ)
    return variables


def _project_name(
    options: LoadOptions, variables: Mapping[str, str], tree: MarkedMap, project_dir: Path
) -> str:
    for given, source in (
        (options.project_name, "-p"),
        (variables.get("COMPOSE_PROJECT_NAME"), "COMPOSE_PROJECT_NAME"),
    ):
        if given:
            if not PROJECT_NAME.fullmatch(given):
                raise UsageError(
                    f"project name {given!r} (from {source}) is invalid: use lower-case letters, "
                    "digits, '-' and '_', starting with a letter or digit"
                )
            return given
    named = tree.get("name")
    if named is not None:
        return str(named)  # checked by the model, with its location
    derived = re.sub(r"[^a-z0-9_-]", "", project_dir.name.lower()).lstrip("_-")
    if not derived:
        raise UsageError(
            f"cannot derive a project name from the directory {project_dir}: give one with -p"
        )
    return derived


def _profiles(options: LoadOptions, variables: Mapping[str, str]) -> tuple[str, ...]:
    if options.profiles:
        return options.profiles
    return tuple(p.strip() for p in variables.get("COMPOSE_PROFILES", "").split(",") if p.strip())


def _apply_profiles(tree: MarkedMap, active: tuple[str, ...]) -> list[str]:
    """Remove the services whose profiles are all inactive; return their names."""
    services = tree.get("services")
    if not isinstance(services, MarkedMap):
        return []
    disabled = []
    for name, service in list(services.items()):
        profiles = service.get("profiles") if isinstance(service, MarkedMap) else None
        if isinstance(profiles, list) and profiles and "*" not in active:
            if not any(str(p) in active for p in profiles):
                disabled.append(name)
                del services[name]
    return disabled


def _fold_env_files(tree: MarkedMap, variables: Mapping[str, str]) -> list[Problem]:
    """Each service's env_file contents go under its `environment` (which wins), as compose does;
    keys listed without a value take theirs from the variables."""
    problems: list[Problem] = []
    services = tree.get("services")
    if not isinstance(services, MarkedMap):
        return problems
    for name, service in services.items():
        if not isinstance(service, MarkedMap):
            continue
        values: dict[str, Any] = {}
        files = service.pop("env_file", None)
        where = service.locations.get("env_file")
        for index, entry in enumerate([files] if isinstance(files, str | dict) else files or []):
            entry_where = files.where(index) if isinstance(files, MarkedSeq) else where
            path, required = _env_file_entry(entry)
            if path is None:
                problems.append(
                    Problem(
                        "expected a path or {path, required}",
                        f"services.{name}.env_file",
                        entry_where,
                    )
                )
                continue
            if not required and not Path(path).exists():
                continue
            try:
                values.update(read_env_file(Path(path), variables.get, referrer=entry_where))
            except StackError as exc:
                problems.extend(exc.problems)
        environment = service.get("environment")
        if isinstance(environment, list):
            environment = key_value_map(environment)
        if environment is None and not values:
            continue
        merged = MarkedMap(where)
        for key, value in values.items():
            merged.put(key, value, where)
        if isinstance(environment, MarkedMap):
            for key, value in environment.items():
                if value is None:
                    value = variables.get(key)
                merged.put(key, value, environment.where(key))
        elif environment is not None:
            problems.append(
                Problem(
                    "expected a map or a list of KEY=VALUE",
                    f"services.{name}.environment",
                    service.where("environment"),
                )
            )
            continue
        service.put("environment", merged, service.locations.get("environment", where))
    return problems


def _env_file_entry(entry: Any) -> tuple[str | None, bool]:
    if isinstance(entry, str):
        return entry, True
    if isinstance(entry, dict) and isinstance(entry.get("path"), str):
        return entry["path"], entry.get("required", True) not in (False, "false")
    return None, True
