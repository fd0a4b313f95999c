"""Reading one stack file: parse, interpolate, follow `include` and `extends`, fix paths.

Each file reached (by `-f`, `include` or `extends`) is read once per load and becomes a marked
tree whose services no longer extend anything, ready to be merged with the others.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from composer.config.environment import Interpolator, read_env_file
from composer.config.merge import merge, merge_services
from composer.config.paths import absolute, resolve_paths, resolve_service_paths
from composer.config.yamlio import MarkedMap, MarkedSeq, load_yaml
from composer.errors import Location, Problem, StackError

__all__ = ["RESOURCE_SECTIONS", "FileReader"]

RESOURCE_SECTIONS = ("services", "networks", "volumes", "configs", "secrets")


@dataclass
class FileReader:
    """Reads stack files with one set of variables; collects problems and warnings."""

    variables: Mapping[str, str]
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    unset: dict[str, Location | None] = field(default_factory=dict)
    _parsed: dict[Path, MarkedMap] = field(default_factory=dict)

    @property
    def home(self) -> str | None:
        return self.variables.get("HOME")

    def read(
        self,
        path: Path,
        base: Path,
        referrer: Location | None = None,
        chain: tuple[Path, ...] = (),
    ) -> MarkedMap:
        """The file at `path`, interpolated, includes merged, extends resolved, paths absolute."""
        tree = self._parse(path, referrer)
        self._include(tree, path, (*chain, path))
        self._extends(tree, path, base)
        resolve_paths(tree, base, self.home)
        return tree

    def _shared(self, path: Path, referrer: Location | None) -> MarkedMap:
        """A file several services extend: parsed once, each caller gets a copy to change."""
        if path not in self._parsed:
            self._parsed[path] = self._parse(path, referrer)
        copy: MarkedMap = _deep_copy(self._parsed[path])
        return copy

    def _parse(self, path: Path, referrer: Location | None) -> MarkedMap:
        """The file parsed and interpolated."""
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise StackError.single(f"{path} does not exist", location=referrer) from None
        except OSError as exc:
            raise StackError.single(
                f"cannot read {path}: {exc.strerror}", location=referrer
            ) from None
        tree = load_yaml(data, str(path))
        if tree is None:
            tree = MarkedMap(Location(str(path), 1, 1))
        if not isinstance(tree, MarkedMap):
            raise StackError.single(
                "a stack file must be a mapping with a `services` key at the top level",
                location=Location(str(path), 1, 1),
            )
        interpolate = Interpolator(self.variables)
        interpolate(tree)
        self.problems.extend(interpolate.problems)
        for name, where in interpolate.unset.items():
            self.unset.setdefault(name, where)
        if "version" in tree:
            self.warnings.append(
                Problem(
                    "the `version` key is obsolete and ignored",
                    "version",
                    tree.where("version"),
                )
            )
            del tree["version"]
        return tree

    # --- include ------------------------------------------------------------------------

    def _include(self, tree: MarkedMap, path: Path, chain: tuple[Path, ...]) -> None:
        entries = tree.pop("include", None)
        if entries is None:
            return
        where = tree.locations.get("include")
        if not isinstance(entries, MarkedSeq):
            self.problems.append(Problem("expected a list of files to include", "include", where))
            return
        for index, entry in enumerate(entries):
            item_where = entries.where(index)
            spec = MarkedMap(item_where)
            if isinstance(entry, str):
                spec.put("path", entry, item_where)
            elif isinstance(entry, MarkedMap):
                spec = entry
            else:
                self.problems.append(
                    Problem(
                        "expected a path or a mapping with `path`", f"include[{index}]", item_where
                    )
                )
                continue
            self._include_one(tree, spec, path, index, chain)

    def _include_one(
        self, tree: MarkedMap, spec: MarkedMap, path: Path, index: int, chain: tuple[Path, ...]
    ) -> None:
        key = f"include[{index}]"
        unknown = set(spec) - {"path", "project_directory", "env_file"}
        for name in sorted(unknown):
            self.problems.append(Problem("unknown key", f"{key}.{name}", spec.where(name)))
        paths = spec.get("path")
        paths = [paths] if isinstance(paths, str) else paths
        if not paths or not all(isinstance(p, str) for p in paths):
            self.problems.append(
                Problem("`path` must name a file or a list of files", key, spec.location)
            )
            return
        files = [Path(absolute(p, path.parent, self.home)) for p in paths]
        for file in files:
            if file in chain:
                cycle = " -> ".join(str(p) for p in (*chain, file))
                raise StackError.single(f"include cycle: {cycle}", key, spec.location)
        project_dir = spec.get("project_directory")
        base = (
            Path(absolute(project_dir, path.parent, self.home))
            if isinstance(project_dir, str)
            else files[0].parent
        )
        variables = dict(self.variables)
        env_files = spec.get("env_file")
        env_list = [env_files] if isinstance(env_files, str) else (env_files or [])
        dotenvs = [Path(absolute(e, path.parent, self.home)) for e in env_list] or [base / ".env"]
        for env in dotenvs:
            if env.exists() or env_list:
                for name, value in read_env_file(
                    env, self.variables.get, referrer=spec.location
                ).items():
                    variables.setdefault(name, value)
        reader = FileReader(variables)
        included = MarkedMap(spec.location)
        for file in files:
            included = _merged(included, reader.read(file, base, spec.where("path"), chain))
        self.problems.extend(reader.problems)
        self.warnings.extend(reader.warnings)
        for name, where in reader.unset.items():
            self.unset.setdefault(name, where)
        for section in RESOURCE_SECTIONS:
            theirs = included.get(section)
            if not isinstance(theirs, MarkedMap):
                continue
            ours = tree.get(section)
            if not isinstance(ours, MarkedMap):
                ours = MarkedMap(theirs.location)
                tree.put(section, ours, theirs.location)
            for name, value in theirs.items():
                if name in ours and ours[name] != value:
                    self.problems.append(
                        Problem(
                            f"{section[:-1]} {name!r} is defined here and in the included "
                            f"file {_file_of(theirs.where(name), files[0])}",
                            f"{section}.{name}",
                            ours.where(name),
                            "rename one of them, or use extends to share a definition",
                        )
                    )
                else:
                    ours.put(name, value, theirs.where(name))

    # --- extends ------------------------------------------------------------------------

    def _extends(self, tree: MarkedMap, path: Path, base: Path) -> None:
        services = tree.get("services")
        if not isinstance(services, MarkedMap):
            return
        for name in list(services):
            if isinstance(services[name], MarkedMap) and "extends" in services[name]:
                services[name] = self._extended(services, name, path, base, ())

    def _extended(
        self,
        services: MarkedMap,
        name: str,
        path: Path,
        base: Path,
        chain: tuple[tuple[Path, str], ...],
    ) -> Any:
        service = services[name]
        if not isinstance(service, MarkedMap) or "extends" not in service:
            return service
        key = f"services.{name}.extends"
        where = service.where("extends")
        if (path, name) in chain:
            members = " -> ".join(n for _, n in (*chain, (path, name)))
            raise StackError.single(f"extends cycle: {members}", key, where)
        spec = service["extends"]
        child = _deep_copy(service)
        del child["extends"]
        if isinstance(spec, str):
            spec = {"service": spec}
        if not isinstance(spec, dict) or not isinstance(spec.get("service"), str):
            self.problems.append(Problem("expected a service name or {service, file}", key, where))
            return child
        target = spec["service"]
        file = spec.get("file")
        if isinstance(file, str):
            other = Path(absolute(file, path.parent, self.home))
            other_tree = self._shared(other, where)
            self._include(other_tree, other, (other,))
            other_services = other_tree.get("services")
            resolve_dir = other.parent
        else:
            other, other_services, resolve_dir = path, services, base
        if not isinstance(other_services, MarkedMap) or target not in other_services:
            self.problems.append(
                Problem(f"extends a service {target!r} that {other} does not define", key, where)
            )
            return child
        parent = self._extended(other_services, target, other, resolve_dir, (*chain, (path, name)))
        if other is not path:
            resolve_service_paths(parent, resolve_dir, self.home)
        return merge_services(_deep_copy(parent), child)


def _file_of(where: Location | None, default: Path) -> str:
    return where.file if where else str(default)


def _merged(base: MarkedMap, override: MarkedMap) -> MarkedMap:
    result = merge(base, override)
    assert isinstance(result, MarkedMap)
    return result


def _deep_copy(node: Any) -> Any:
    if isinstance(node, MarkedMap):
        copy = MarkedMap(node.location)
        for key, value in node.items():
            copy.put_from(node, key, _deep_copy(value))
        return copy
    if isinstance(node, MarkedSeq):
        seq = MarkedSeq(node.location)
        for index, value in enumerate(node):
            seq.push(_deep_copy(value), node.where(index))
        return seq
    return node
