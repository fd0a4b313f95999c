"""The convergence plan, decided from the stack and the containers that exist (no kernel)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from composer.config.loader import LoadOptions, Stack, load_stack
from composer.errors import ComposerError
from composer.planner import Fingerprint, Observed, PlanOptions, fingerprints, plan

BASE = """
name: demo
services:
  db:
    image: busybox
  web:
    image: busybox
    depends_on: [db]
  worker:
    image: busybox
    depends_on:
      db: {condition: service_started, restart: true}
"""


def load(tmp_path: Path, text: str = BASE) -> Stack:
    path = tmp_path / "compose.yaml"
    path.write_text(textwrap.dedent(text))
    return load_stack(LoadOptions(files=(path,), working_directory=tmp_path))


def running(stack: Stack, hashes: dict[str, Fingerprint]) -> list[Observed]:
    """One running replica of every service, made with `hashes`."""
    return [Observed(f"demo-{s}-1", s, 1, hashes[s], "running") for s in stack.project.services]


def kinds(result: object) -> dict[str, str]:
    return {a.name: a.kind for a in result.actions}  # type: ignore[attr-defined]


def test_a_fresh_stack_creates_every_container(tmp_path: Path) -> None:
    stack = load(tmp_path)
    result = plan(stack, fingerprints(stack, {}), [], PlanOptions())
    assert kinds(result) == {"demo-db-1": "create", "demo-web-1": "create", "demo-worker-1": "create"}


def test_nothing_changed_keeps_everything(tmp_path: Path) -> None:
    stack = load(tmp_path)
    hashes = fingerprints(stack, {})
    assert set(kinds(plan(stack, hashes, running(stack, hashes), PlanOptions())).values()) == {"keep"}


def test_only_the_changed_service_is_recreated(tmp_path: Path) -> None:
    stack = load(tmp_path)
    before = fingerprints(stack, {})
    changed = load(tmp_path, BASE.replace("  web:\n    image: busybox", "  web:\n    image: busybox\n    environment: {A: 1}"))
    result = plan(changed, fingerprints(changed, {}), running(stack, before), PlanOptions())
    assert kinds(result) == {"demo-db-1": "keep", "demo-web-1": "recreate", "demo-worker-1": "keep"}
    assert [a.replaces for a in result.actions if a.kind == "recreate"] == ["demo-web-1"]


def test_a_dependency_with_restart_true_recreates_its_dependents(tmp_path: Path) -> None:
    stack = load(tmp_path)
    before = fingerprints(stack, {})
    changed = load(tmp_path, BASE.replace("  db:\n    image: busybox", "  db:\n    image: busybox\n    user: nobody"))
    result = plan(changed, fingerprints(changed, {}), running(stack, before), PlanOptions())
    # worker depends on db with restart: true; web only needs db started
    assert kinds(result) == {"demo-db-1": "recreate", "demo-web-1": "keep", "demo-worker-1": "recreate"}


def test_a_new_image_recreates_with_that_reason(tmp_path: Path) -> None:
    stack = load(tmp_path)
    one = fingerprints(stack, {"web": "sha256:1"})
    two = fingerprints(stack, {"web": "sha256:2"})
    assert one["web"].config == two["web"].config  # what `composer config --hash` prints
    result = plan(stack, two, running(stack, one), PlanOptions())
    assert [(a.name, a.reason) for a in result.actions if a.kind == "recreate"] == [("demo-web-1", "image changed")]


def test_the_configuration_hash_is_the_one_config_hash_prints(tmp_path: Path) -> None:
    from composer.config.serialize import service_hash

    stack = load(tmp_path)
    assert fingerprints(stack, {})["web"].config == service_hash(stack.project, "web")


def test_replicas_do_not_change_the_hash(tmp_path: Path) -> None:
    stack = load(tmp_path)
    scaled = load(tmp_path, BASE.replace("  web:\n    image: busybox", "  web:\n    image: busybox\n    deploy: {replicas: 3}"))
    assert fingerprints(stack, {})["web"] == fingerprints(scaled, {})["web"]


def test_force_recreate_and_no_recreate(tmp_path: Path) -> None:
    stack = load(tmp_path)
    hashes = fingerprints(stack, {})
    forced = plan(stack, hashes, running(stack, hashes), PlanOptions(force_recreate=True))
    assert set(kinds(forced).values()) == {"recreate"}
    stale = [Observed(o.name, o.service, 1, Fingerprint("old"), "running") for o in running(stack, hashes)]
    kept = plan(stack, hashes, stale, PlanOptions(no_recreate=True))
    assert set(kinds(kept).values()) == {"keep"}
    with pytest.raises(ComposerError, match="cannot be used together"):
        plan(stack, hashes, [], PlanOptions(force_recreate=True, no_recreate=True))


def test_a_stopped_container_is_started(tmp_path: Path) -> None:
    stack = load(tmp_path)
    hashes = fingerprints(stack, {})
    observed = [Observed(o.name, o.service, 1, o.fingerprint, "exited") for o in running(stack, hashes)]
    assert set(kinds(plan(stack, hashes, observed, PlanOptions())).values()) == {"start"}


def test_scale_adds_and_removes_replicas_highest_first(tmp_path: Path) -> None:
    stack = load(tmp_path)
    hashes = fingerprints(stack, {})
    up = plan(stack, hashes, running(stack, hashes), PlanOptions(scale={"web": 3}))
    assert [(a.name, a.kind) for a in up.of("web")] == [
        ("demo-web-1", "keep"), ("demo-web-2", "create"), ("demo-web-3", "create")]
    three = running(stack, hashes) + [Observed(f"demo-web-{n}", "web", n, hashes["web"], "running") for n in (2, 3)]
    down = plan(stack, hashes, three, PlanOptions(scale={"web": 1}))
    assert [(a.name, a.kind) for a in down.of("web")] == [
        ("demo-web-1", "keep"), ("demo-web-2", "remove"), ("demo-web-3", "remove")]
    with pytest.raises(ComposerError, match="--scale nope=2: no such service"):
        plan(stack, hashes, [], PlanOptions(scale={"nope": 2}))


def test_orphans_are_reported_and_removed_only_when_asked(tmp_path: Path) -> None:
    stack = load(tmp_path)
    hashes = fingerprints(stack, {})
    observed = [*running(stack, hashes), Observed("demo-old-1", "old", 1, Fingerprint("x"), "running")]
    kept = plan(stack, hashes, observed, PlanOptions())
    assert [o.name for o in kept.orphans] == ["demo-old-1"] and "demo-old-1" not in kinds(kept)
    removed = plan(stack, hashes, observed, PlanOptions(remove_orphans=True))
    assert kinds(removed)["demo-old-1"] == "remove"


def test_named_services_bring_what_they_need_unless_no_deps(tmp_path: Path) -> None:
    stack = load(tmp_path)
    hashes = fingerprints(stack, {})
    assert set(kinds(plan(stack, hashes, [], PlanOptions(services=("web",))))) == {"demo-db-1", "demo-web-1"}
    assert set(kinds(plan(stack, hashes, [], PlanOptions(services=("web",), no_deps=True)))) == {"demo-web-1"}
    with pytest.raises(ComposerError, match="no such service: nope"):
        plan(stack, hashes, [], PlanOptions(services=("nope",)))


def test_container_name_with_replicas_is_an_error(tmp_path: Path) -> None:
    stack = load(tmp_path, BASE.replace("  web:\n    image: busybox", "  web:\n    image: busybox\n    container_name: fixed"))
    hashes = fingerprints(stack, {})
    assert kinds(plan(stack, hashes, [], PlanOptions()))["fixed"] == "create"
    with pytest.raises(ComposerError, match="container_name 'fixed' cannot be shared by 2 replicas"):
        plan(stack, hashes, [], PlanOptions(scale={"web": 2}))
