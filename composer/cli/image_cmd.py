"""`composer image …`: the image store from the command line (import, load, pull, save, ls,
inspect, tag, rm, prune), with docker's output where docker has one."""

from __future__ import annotations

import datetime
import json
import time
from pathlib import Path
from typing import Any

import click

from composer.cli.progress import human_size, pull_progress
from composer.config.types import shell_words
from composer.errors import ComposerError, UsageError
from composer.images import images_in_use, open_store
from composer.settings import Settings
from engine.errors import EngineError
from engine.images.archive import ConfigChanges, import_rootfs, load_archive, save_archive
from engine.images.reference import Reference, parse_reference
from engine.images.store import Image, ImageStore

__all__ = ["image"]


def _words(value: str, option: str) -> tuple[str, ...]:
    """A command given on the command line: a JSON list, or a string split like a shell."""
    if value.lstrip().startswith("["):
        try:
            words = json.loads(value)
        except ValueError as exc:
            raise UsageError(f"{option}: {value!r} is not a JSON list: {exc}") from exc
        if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
            raise UsageError(f"{option}: expected a JSON list of strings")
        return tuple(words)
    try:
        return tuple(shell_words(value))
    except ValueError as exc:
        raise UsageError(f"{option}: {exc}") from exc


def _store() -> tuple[Settings, ImageStore]:
    settings = Settings.load()
    return settings, open_store(settings)


@click.group()
def image() -> None:
    """Manage images: import, load, pull, save, list, inspect, remove."""


@image.command("import")
@click.argument("tarball", type=click.Path(path_type=Path, dir_okay=False))
@click.argument("name", required=False)
@click.option("--cmd", help='Default command: a JSON list (["sh"]) or a shell-style string.')
@click.option("--entrypoint", help="Entrypoint: a JSON list or a shell-style string.")
@click.option("-e", "--env", "env", multiple=True, metavar="KEY=VALUE", help="Environment.")
@click.option("-w", "--workdir", help="Working directory.")
@click.option("-u", "--user", help="User (name or uid[:gid]).")
def import_(
    tarball: Path,
    name: str | None,
    cmd: str | None,
    entrypoint: str | None,
    env: tuple[str, ...],
    workdir: str | None,
    user: str | None,
) -> None:
    """Make a one-layer image of a root filesystem tarball (tar, tar.gz or tar.zst)."""
    for entry in env:
        if "=" not in entry:
            raise UsageError(f"--env {entry!r}: expected KEY=VALUE")
    changes = ConfigChanges(
        cmd=_words(cmd, "--cmd") if cmd is not None else None,
        entrypoint=_words(entrypoint, "--entrypoint") if entrypoint is not None else None,
        env=env,
        working_dir=workdir,
        user=user,
    )
    _, store = _store()
    made = import_rootfs(store, tarball, parse_reference(name) if name else None, changes)
    click.echo(made.id)


@image.command()
@click.option(
    "-i",
    "--input",
    "archive",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="A docker save archive or an OCI image-layout archive.",
)
@click.option("-q", "--quiet", is_flag=True, help="Print nothing on success.")
def load(archive: Path, quiet: bool) -> None:
    """Load the images of an archive (docker save, or OCI layout as skopeo writes it)."""
    _, store = _store()
    result = load_archive(store, archive)
    if quiet:
        return
    for loaded in result.images:
        for tag in loaded.repo_tags:
            click.echo(f"Loaded image: {tag}")
    for image_id in result.unnamed:
        click.echo(
            f"Loaded image ID: {image_id} (unnamed: give it a name with `composer image tag`)"
        )


@image.command()
@click.argument("reference")
@click.option("-q", "--quiet", is_flag=True, help="Print only the image id.")
def pull(reference: str, quiet: bool) -> None:
    """Pull an image from a registry (HTTPS; plain HTTP for loopback and insecure ones)."""
    import anyio

    from engine.images.auth import docker_credentials
    from engine.images.registry import RegistryClient

    settings, store = _store()
    client = RegistryClient(store, settings.insecure_registries, docker_credentials)
    ref = parse_reference(reference)
    with pull_progress(quiet) as progress:
        pulled = anyio.run(client.pull, ref, progress)
    if quiet:
        click.echo(pulled.id)
        return
    if pulled.repo_digests:
        click.echo(f"Digest: {pulled.repo_digests[0].rpartition('@')[2]}")
    click.echo(f"Pulled {ref.familiar()} ({pulled.short_id})")


@image.command()
@click.argument("images", nargs=-1, required=True)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="The archive to write.",
)
def save(images: tuple[str, ...], output: Path) -> None:
    """Write images to a docker save archive (docker load and skopeo read it)."""
    _, store = _store()
    chosen: dict[str, tuple[Image, list[Reference]]] = {}
    for text in images:
        found = store.get(text)
        entry = chosen.setdefault(found.id, (found, []))
        for name in _names_meant(text, found):
            if name not in entry[1]:
                entry[1].append(name)
    save_archive(store, chosen.values(), output)


def _names_meant(text: str, found: Image) -> list[Reference]:
    """The name `text` if it is one of the image's names, else (an id) all of them."""
    try:
        ref = parse_reference(text)
    except EngineError:
        ref = None
    if ref is not None and ref.familiar() in found.repo_tags:
        return [ref]
    return [parse_reference(t) for t in found.repo_tags]


def _created(config_created: str | None) -> str:
    if not config_created:
        return "N/A"
    try:
        when = datetime.datetime.fromisoformat(config_created.replace("Z", "+00:00"))
    except ValueError:
        return "N/A"
    seconds = max(0.0, time.time() - when.timestamp())
    for unit, size in (
        ("year", 31536000),
        ("month", 2592000),
        ("week", 604800),
        ("day", 86400),
        ("hour", 3600),
        ("minute", 60),
    ):
        if seconds >= size:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if count > 1 else ''} ago"
    return "Less than a minute ago" if seconds >= 1 else "Less than a second ago"


def _rows(found: Image) -> list[tuple[str, str]]:
    if not found.repo_tags:
        return [("<none>", "<none>")]
    rows = []
    for tag in found.repo_tags:
        repo, _, name_tag = tag.rpartition(":")
        rows.append((repo, name_tag) if "/" not in name_tag else (tag, "<none>"))
    return rows


@image.command("ls")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="Output format.",
)
@click.option("-q", "--quiet", is_flag=True, help="Print only image ids.")
def ls(fmt: str, quiet: bool) -> None:
    """List the images in the store."""
    _, store = _store()
    images = store.images()
    if quiet:
        for found in images:
            click.echo(found.short_id)
        return
    if fmt == "json":
        click.echo(json.dumps([_summary(i) for i in images], indent=2))
        return
    table = [("REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE")]
    for found in images:
        for repo, tag in _rows(found):
            table.append(
                (repo, tag, found.short_id, _created(found.config.created), human_size(found.size))
            )
    widths = [max(len(row[i]) for row in table) for i in range(5)]
    for row in table:
        click.echo("   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def _summary(found: Image) -> dict[str, Any]:
    return {
        "Id": found.id,
        "RepoTags": list(found.repo_tags),
        "RepoDigests": list(found.repo_digests),
        "Created": found.config.created,
        "Size": found.size,
    }


def inspect_document(found: Image) -> dict[str, Any]:
    """An image as `docker image inspect` shows it."""
    raw = found.config.raw
    return {
        "Id": found.id,
        "RepoTags": list(found.repo_tags),
        "RepoDigests": list(found.repo_digests),
        "Created": found.config.created,
        "Architecture": found.config.architecture,
        "Os": found.config.os,
        "Size": found.size,
        "Config": raw.get("config") or {},
        "RootFS": {"Type": "layers", "Layers": list(found.config.diff_ids)},
        "Metadata": {"ManifestDigest": found.manifest_digest},
    }


@image.command()
@click.argument("images", nargs=-1, required=True)
def inspect(images: tuple[str, ...]) -> None:
    """Show images as JSON, shaped like `docker image inspect`."""
    _, store = _store()
    documents, missing = [], []
    for text in images:
        found = store.find(text)
        if found is None:
            missing.append(text)
        else:
            documents.append(inspect_document(found))
    click.echo(json.dumps(documents, indent=4))
    if missing:
        raise ComposerError("no such image: " + ", ".join(missing))


@image.command()
@click.argument("source")
@click.argument("target")
def tag(source: str, target: str) -> None:
    """Give an image another name."""
    _, store = _store()
    store.tag(store.get(source), parse_reference(target))


@image.command()
@click.argument("images", nargs=-1, required=True)
@click.option("-f", "--force", is_flag=True, help="Remove every name of an id; keep used ones.")
def rm(images: tuple[str, ...], force: bool) -> None:
    """Remove images (a name, or an id with all its names)."""
    settings, store = _store()
    failed = []
    for text in images:
        try:
            for line in store.remove(text, lambda: images_in_use(settings), force=force):
                click.echo(line)
        except EngineError as exc:  # report it and go on with the others, as docker rmi does
            click.echo(f"error: {exc}", err=True)
            failed.append(text)
    if failed:
        raise ComposerError(f"{len(failed)} of {len(images)} images not removed")


@image.command()
@click.option("-a", "--all", "all_unused", is_flag=True, help="Every image no container uses.")
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation.")
def prune(all_unused: bool, force: bool) -> None:
    """Remove unnamed images (-a: unused ones) and the layers only they needed."""
    if not force:
        what = "all images without at least one container" if all_unused else "all dangling images"
        click.confirm(f"This will remove {what}. Are you sure you want to continue?", abort=True)
    settings, store = _store()
    report = store.prune(lambda: images_in_use(settings), all_unused=all_unused)
    if report.images:
        click.echo("Deleted Images:")
        for image_id in report.images:
            click.echo(f"deleted: {image_id}")
    click.echo(f"Total reclaimed space: {human_size(report.reclaimed)}")
