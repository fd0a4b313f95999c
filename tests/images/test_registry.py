"""Pulling from a real registry (Debian's docker-registry on 127.0.0.1, fed by skopeo)."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from engine.errors import RegistryError
from engine.images.auth import Credentials, docker_credentials
from engine.images.reference import parse_reference
from engine.images.registry import PullProgress, RegistryClient, uses_plain_http
from engine.images.store import Image, ImageStore
from tests.images.imagetools import OciLayout, Registry, big_image
from tests.images.tokenproxy import TokenProxy


def pull(
    store: ImageStore,
    ref: str,
    *,
    credentials: Callable[[str], Credentials | None] = lambda _d: None,
    progress: Callable[[PullProgress], None] | None = None,
) -> Image:
    client = RegistryClient(store, credentials=credentials)
    return anyio.run(client.pull, parse_reference(ref), progress)


def test_pull_by_tag_records_the_registrys_manifest_digest(store: ImageStore, registry: Registry, oci_layout: OciLayout) -> None:
    registry.push(oci_layout.ref("busybox:latest"), "tools/busybox:1")
    image = pull(store, registry.image("tools/busybox:1"))
    digest = registry.manifest_digest("tools/busybox:1")
    assert image.repo_tags == (registry.image("tools/busybox:1"),)
    assert image.repo_digests == (f"{registry.address}/tools/busybox@{digest}",)
    assert image.config.cmd == ("sh",)
    assert (store.layer_path(image.layers[0].diff_id) / "bin/busybox").is_file()


def test_pull_by_digest_gives_an_image_without_a_tag(store: ImageStore, registry: Registry, oci_layout: OciLayout) -> None:
    registry.push(oci_layout.ref("busybox:latest"), "busybox:1")
    digest = registry.manifest_digest("busybox:1")
    image = pull(store, f"{registry.address}/busybox@{digest}")
    assert image.repo_tags == ()
    assert store.get(f"{registry.address}/busybox@{digest}").id == image.id


def test_a_multi_arch_index_gives_this_machines_image(store: ImageStore, registry: Registry, oci_layout: OciLayout) -> None:
    registry.push(oci_layout.ref("multiarch:latest"), "multi:1", all_images=True)
    image = pull(store, registry.image("multi:1"))
    assert image.config.architecture == "amd64"
    assert (store.layer_path(image.layers[-1].diff_id) / "arch").read_text() == "amd64"
    assert image.repo_digests == (f"{registry.address}/multi@{registry.manifest_digest('multi:1')}",)


def test_a_second_pull_fetches_no_layer(store: ImageStore, registry: Registry, oci_layout: OciLayout) -> None:
    registry.push(oci_layout.ref("multi:latest"), "multi:1")
    pull(store, registry.image("multi:1"))
    events: list[PullProgress] = []
    pull(store, registry.image("multi:1"), progress=events.append)
    assert {e.status for e in events} == {"exists"}
    assert len(events) == 3


def test_layers_shared_with_another_image_are_not_fetched_again(store: ImageStore, registry: Registry, oci_layout: OciLayout) -> None:
    registry.push(oci_layout.ref("busybox:latest"), "busybox:1")
    registry.push(oci_layout.ref("multi:latest"), "multi:1")
    pull(store, registry.image("busybox:1"))
    events: list[PullProgress] = []
    pull(store, registry.image("multi:1"), progress=events.append)
    fetched = {e.digest for e in events if e.status == "downloading"}
    assert len(fetched) == 2
    assert sum(1 for e in events if e.status == "exists") == 1


def test_a_missing_tag_is_an_error_naming_image_and_registry(store: ImageStore, registry: Registry) -> None:
    with pytest.raises(RegistryError, match=rf"nothere:1.*{registry.address} answered not found"):
        pull(store, registry.image("nothere:1"))


def test_basic_auth_uses_the_login_from_docker_config(store: ImageStore, auth_registry: Registry, oci_layout: OciLayout, tmp_path: Path) -> None:
    auth_registry.push(oci_layout.ref("busybox:latest"), "private/busybox:1")
    config = tmp_path / "docker/config.json"
    config.parent.mkdir()
    login = base64.b64encode(b"tester:s3cret").decode()
    config.write_text(json.dumps({"auths": {auth_registry.address: {"auth": login}}}))
    image = pull(store, auth_registry.image("private/busybox:1"), credentials=lambda d: docker_credentials(d, config))
    assert image.config.cmd == ("sh",)


def test_a_registry_that_wants_a_login_we_lack_says_so(store: ImageStore, auth_registry: Registry, oci_layout: OciLayout) -> None:
    auth_registry.push(oci_layout.ref("busybox:latest"), "private/busybox:1")
    with pytest.raises(RegistryError, match=r"requires a login.*docker/config.json"):
        pull(store, auth_registry.image("private/busybox:1"))


def test_a_wrong_login_is_reported_as_such(store: ImageStore, auth_registry: Registry, oci_layout: OciLayout) -> None:
    auth_registry.push(oci_layout.ref("busybox:latest"), "private/busybox:1")
    with pytest.raises(RegistryError, match=r"authentication failed"):
        pull(store, auth_registry.image("private/busybox:1"), credentials=lambda _d: Credentials("tester", "wrong"))


def test_anonymous_bearer_tokens_are_fetched_from_the_realm(store: ImageStore, registry: Registry, oci_layout: OciLayout) -> None:
    registry.push(oci_layout.ref("busybox:latest"), "library/busybox:1")
    assert registry.port is not None
    with TokenProxy(registry.port) as proxy:
        image = pull(store, f"{proxy.address}/library/busybox:1")
    assert image.config.cmd == ("sh",)
    assert proxy.token_requests == [{"service": "test-registry", "scope": "repository:library/busybox:pull"}]


def test_bearer_token_realms_get_the_login_when_there_is_one(store: ImageStore, registry: Registry, oci_layout: OciLayout) -> None:
    registry.push(oci_layout.ref("busybox:latest"), "busybox:1")
    assert registry.port is not None
    with TokenProxy(registry.port, login=("tester", "s3cret")) as proxy:
        with pytest.raises(RegistryError, match=r"getting a token.*authentication failed"):
            pull(store, f"{proxy.address}/busybox:1")
        image = pull(store, f"{proxy.address}/busybox:1", credentials=lambda _d: Credentials("tester", "s3cret"))
    assert image.config.cmd == ("sh",)


def blobs_are_intact(store: ImageStore) -> bool:
    for blob in (store.root / "blobs/sha256").iterdir():
        if hashlib.sha256(blob.read_bytes()).hexdigest() != blob.name:
            return False
    return True


def test_a_registry_killed_mid_pull_leaves_the_store_consistent_and_the_next_pull_resumes(store: ImageStore, registry: Registry, oci_layout: OciLayout) -> None:
    big_image(oci_layout, "big:1", 48, 24, layers=2)
    registry.push(oci_layout.ref("big:1"), "big:1")
    killed: list[int] = []

    def kill_after_8_mb(event: PullProgress) -> None:
        if event.status == "downloading" and event.done > 8 << 20 and not killed:
            killed.append(event.done)
            registry.kill()

    with pytest.raises(RegistryError, match=r"pulling .*big:1.*pulling again resumes"):
        pull(store, registry.image("big:1"), progress=kill_after_8_mb)
    assert killed
    assert store.images() == []
    assert store.find(registry.image("big:1")) is None
    assert blobs_are_intact(store)
    partial = sum(p.stat().st_size for p in (store.root / "blobs/partial").iterdir())
    assert partial >= 8 << 20

    registry.restart()
    events: list[PullProgress] = []
    image = pull(store, registry.image("big:1"), progress=events.append)
    assert blobs_are_intact(store)
    assert store.get(registry.image("big:1")).id == image.id
    first_progress = {}
    for e in events:
        if e.status == "downloading":
            first_progress.setdefault(e.digest, e.done)
    assert max(first_progress.values()) > 8 << 20  # resumed, not started over


def test_concurrent_pulls_of_one_image_share_the_downloads(store: ImageStore, registry: Registry, oci_layout: OciLayout) -> None:
    registry.push(oci_layout.ref("multi:latest"), "multi:1")

    async def both() -> None:
        client = RegistryClient(store)
        async with anyio.create_task_group() as group:
            for _ in range(3):
                group.start_soon(client.pull, parse_reference(registry.image("multi:1")))

    anyio.run(both)
    assert len(store.images()) == 1
    assert blobs_are_intact(store)
    assert list((store.root / "blobs/partial").iterdir()) == [] or all(
        p.stat().st_size == 0 for p in (store.root / "blobs/partial").iterdir()
    )


@pytest.mark.parametrize(
    ("host", "insecure", "plain"),
    [
        ("127.0.0.1:5000", (), True),
        ("127.8.9.10", (), True),
        ("localhost:5000", (), True),
        ("[::1]:5000", (), True),
        ("registry-1.docker.io", (), False),
        ("10.0.0.5:5000", (), False),
        ("registry.internal:5000", ("registry.internal:5000",), True),
        ("registry.internal:5000", ("registry.internal",), True),
        ("registry.internal:5000", ("other:5000",), False),
    ],
)
def test_only_loopback_and_listed_registries_are_reached_over_plain_http(host: str, insecure: tuple[str, ...], plain: bool) -> None:
    assert uses_plain_http(host, insecure) is plain
