"""The image fixtures build what they promise: skopeo reads them, the registries answer."""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path

import pytest

from tests.images.imagetools import (
    MULTILAYER_VIEW,
    OciLayout,
    Registry,
    ToolError,
    run_tool,
    skopeo_copy,
    walk_view,
)


def inspect(ref: str, *args: str) -> dict[str, object]:
    """``skopeo inspect [args] REF``, parsed."""
    data: dict[str, object] = json.loads(run_tool("skopeo", "inspect", *args, ref))
    return data


def test_busybox_dir_and_tar(busybox_dir: Path, busybox_tar: Path) -> None:
    assert (busybox_dir / "bin/sh").readlink() == Path("busybox")
    assert (busybox_dir / "tmp").stat().st_mode & 0o7777 == 0o1777
    assert "extra:x:2000:app" in (busybox_dir / "etc/group").read_text()
    with tarfile.open(busybox_tar) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert "bin/busybox" in members and not any(n.startswith(("./", "/")) for n in members)
    assert members["home/app"].uid == 1000 and members["home/app"].uname == ""


def test_oci_layout_images(oci_layout: OciLayout) -> None:
    assert sorted(oci_layout.tags()) == ["busybox:latest", "multi:latest", "multiarch:latest"]
    config = inspect(oci_layout.ref("busybox:latest"), "--config")
    assert config["config"] == {"Cmd": ["sh"]}
    assert len(oci_layout.manifest("multi:latest")["layers"]) == 3


def test_multiarch_index(oci_layout: OciLayout, tmp_path: Path) -> None:
    raw = json.loads(run_tool("skopeo", "inspect", "--raw", oci_layout.ref("multiarch:latest")))
    assert raw["mediaType"] == "application/vnd.oci.image.index.v1+json"
    platforms = [m["platform"] for m in raw["manifests"]]
    assert platforms == [{"architecture": a, "os": "linux"} for a in ("amd64", "arm64")]
    for arch in ("amd64", "arm64"):
        copy = OciLayout(tmp_path / arch)
        skopeo_copy(oci_layout.ref("multiarch:latest"), copy.ref("img"), f"--override-arch={arch}")
        run_tool("umoci", "unpack", f"--image={copy.path}:img", str(tmp_path / f"{arch}-bundle"))
        assert (tmp_path / f"{arch}-bundle/rootfs/arch").read_text() == arch


def test_multilayer_unpacks_to_the_expected_view(oci_layout: OciLayout, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    run_tool("umoci", "unpack", f"--image={oci_layout.path}:multi:latest", str(bundle))
    view = dict(walk_view(bundle / "rootfs", ["data", "keep", "etc/motd"]))
    assert view == MULTILAYER_VIEW


def test_archives(docker_archive: Path, oci_archive: Path) -> None:
    for tag in ("busybox:local", "busybox:other"):
        assert inspect(f"docker-archive:{docker_archive}:{tag}")["Os"] == "linux"
    assert inspect(f"oci-archive:{oci_archive}:busybox:latest")["Architecture"] == "amd64"


def test_registry_push_and_digest(registry: Registry, oci_layout: OciLayout) -> None:
    assert registry.request("GET", "/v2/")[0] == 200
    registry.push(oci_layout.ref("busybox:latest"), "library/busybox:1")
    digest = registry.manifest_digest("library/busybox:1")
    assert digest == oci_layout.descriptor("busybox:latest")["digest"]
    registry.push(oci_layout.ref("multiarch:latest"), "multi/arch:latest", all_images=True)
    index_digest = registry.manifest_digest("multi/arch:latest")
    assert index_digest == oci_layout.descriptor("multiarch:latest")["digest"]
    registry.restart()
    assert registry.tags("library/busybox") == ["1"]


def test_auth_registry(auth_registry: Registry, oci_layout: OciLayout) -> None:
    assert auth_registry.request("GET", "/v2/", authenticate=False)[0] == 401
    assert auth_registry.request("GET", "/v2/")[0] == 200
    with pytest.raises(ToolError, match=r"unauthorized|authentication required"):
        run_tool(
            "skopeo", "copy", "--insecure-policy", "--dest-tls-verify=false", "--dest-no-creds",
            oci_layout.ref("busybox:latest"), f"docker://{auth_registry.image('x:y')}",
        )  # fmt: skip
    auth_registry.push(oci_layout.ref("busybox:latest"), "busybox:latest")
    assert auth_registry.manifest_digest("busybox:latest").startswith("sha256:")


def test_registry_kill_and_restart(registry: Registry) -> None:
    pid = registry.pid
    assert pid is not None
    registry.kill()
    assert registry.pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    address = registry.address
    registry.start()
    assert registry.address == address and registry.request("GET", "/v2/")[0] == 200
