"""`composer image …` and `composer pull` as a user runs them: output, exit codes, no traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from composer.cli.main import main
from tests.images.imagetools import OciLayout, Registry, run_tool


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "state"
    monkeypatch.setenv("COMPOSER_ROOT", str(root))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    monkeypatch.chdir(tmp_path)
    return root


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_import_then_ls_inspect_and_rm(state: Path, busybox_tar: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "image", "import", str(busybox_tar), "bb:1", "--cmd", "sh -c 'echo hi'", "-e", "A=1", "-w", "/tmp", "-u", "app")
    assert code == 0 and out.startswith("sha256:")
    code, out, _ = run(capsys, "image", "ls")
    header, row = out.splitlines()
    assert header.split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert row.split()[:2] == ["bb", "1"]
    code, out, _ = run(capsys, "image", "inspect", "bb:1")
    [doc] = json.loads(out)
    assert doc["RepoTags"] == ["bb:1"]
    assert doc["Config"] == {"Cmd": ["sh", "-c", "echo hi"], "Env": ["A=1"], "WorkingDir": "/tmp", "User": "app"}
    assert len(doc["RootFS"]["Layers"]) == 1
    code, out, _ = run(capsys, "image", "rm", "bb:1")
    assert code == 0 and out.splitlines()[0] == "Untagged: bb:1" and out.splitlines()[1].startswith("Deleted: sha256:")
    code, out, _ = run(capsys, "image", "ls", "-q")
    assert out == ""


def test_load_prints_each_loaded_name(state: Path, docker_archive: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "image", "load", "-i", str(docker_archive))
    assert code == 0
    assert out.splitlines() == ["Loaded image: busybox:local", "Loaded image: busybox:other"]


def test_ls_as_json(state: Path, docker_archive: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "image", "load", "-i", str(docker_archive))
    _, out, _ = run(capsys, "image", "ls", "--format", "json")
    [entry] = json.loads(out)
    assert entry["RepoTags"] == ["busybox:local", "busybox:other"]
    assert entry["Id"].startswith("sha256:") and entry["Size"] > 1_000_000


def test_save_writes_an_archive_of_the_named_tag(state: Path, docker_archive: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "image", "load", "-i", str(docker_archive))
    out_file = tmp_path / "out.tar"
    code, _, err = run(capsys, "image", "save", "-o", str(out_file), "busybox:other")
    assert code == 0, err
    manifest = json.loads(run_tool("tar", "-xOf", str(out_file), "manifest.json"))
    assert manifest[0]["RepoTags"] == ["busybox:other"]
    run_tool("skopeo", "inspect", f"docker-archive:{out_file}")


def test_unknown_images_are_errors_without_a_traceback(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "image", "inspect", "nope")[0] == 1
    code, _, err = run(capsys, "image", "rm", "nope:2")
    assert code == 1 and "no such image: nope:2" in err and "Traceback" not in err
    code, _, err = run(capsys, "image", "pull", "Bad_Name")
    assert code == 1 and "invalid image reference 'Bad_Name'" in err and "lowercase" in err


def test_a_broken_tarball_is_reported_with_its_name(state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken.tar.gz"
    broken.write_bytes(b"\x1f\x8b\x08\x00garbage")
    code, _, err = run(capsys, "image", "import", str(broken), "x:1")
    assert code == 1 and f"rootfs {broken}" in err and "Traceback" not in err


def test_prune_reports_what_it_freed(state: Path, busybox_tar: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "image", "import", str(busybox_tar))
    code, out, _ = run(capsys, "image", "prune", "-f")
    assert code == 0
    assert out.splitlines()[0] == "Deleted Images:"
    assert out.splitlines()[-1].startswith("Total reclaimed space: ") and "MB" in out


def test_image_pull_from_a_local_registry(state: Path, registry: Registry, oci_layout: OciLayout, capsys: pytest.CaptureFixture[str]) -> None:
    registry.push(oci_layout.ref("busybox:latest"), "busybox:1")
    code, out, err = run(capsys, "image", "pull", registry.image("busybox:1"))
    assert code == 0, err
    assert out.splitlines() == [f"Digest: {registry.manifest_digest('busybox:1')}", f"Pulled {registry.image('busybox:1')} ({out.split('(')[1][:12]})"]
    code, out, _ = run(capsys, "image", "inspect", registry.image("busybox:1"))
    assert json.loads(out)[0]["RepoDigests"] == [f"{registry.address}/busybox@{registry.manifest_digest('busybox:1')}"]


STACK = """\
services:
  web:
    image: {address}/busybox:1
  other:
    image: {address}/multi:1
    pull_policy: {policy}
  built:
    build: ./src
"""


def test_pull_pulls_every_service_image(state: Path, tmp_path: Path, registry: Registry, oci_layout: OciLayout, capsys: pytest.CaptureFixture[str]) -> None:
    registry.push(oci_layout.ref("busybox:latest"), "busybox:1")
    registry.push(oci_layout.ref("multi:latest"), "multi:1")
    (tmp_path / "compose.yaml").write_text(STACK.format(address=registry.address, policy="missing"))
    code, _, err = run(capsys, "pull", "-q")
    assert code == 0, err
    _, out, _ = run(capsys, "image", "ls", "--format", "json")
    assert sorted(t for i in json.loads(out) for t in i["RepoTags"]) == [registry.image("busybox:1"), registry.image("multi:1")]


def test_pull_skips_services_whose_policy_is_never_and_reports_them_missing(state: Path, tmp_path: Path, registry: Registry, oci_layout: OciLayout, capsys: pytest.CaptureFixture[str]) -> None:
    registry.push(oci_layout.ref("busybox:latest"), "busybox:1")
    registry.push(oci_layout.ref("multi:latest"), "multi:1")
    (tmp_path / "compose.yaml").write_text(STACK.format(address=registry.address, policy="never"))
    code, _, err = run(capsys, "pull")
    assert code == 1
    assert "other: image " in err and "pull_policy is never" in err
    _, out, _ = run(capsys, "image", "ls", "--format", "json")
    assert [i["RepoTags"] for i in json.loads(out)] == [[registry.image("busybox:1")]]
    assert run(capsys, "pull", "--ignore-pull-failures", "web")[0] == 0


def test_pull_names_the_service_whose_image_is_missing_from_the_registry(state: Path, tmp_path: Path, registry: Registry, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "compose.yaml").write_text(f"services:\n  web:\n    image: {registry.address}/absent:1\n")
    code, _, err = run(capsys, "pull")
    assert code == 1
    assert f"error: web: pulling {registry.address}/absent:1" in err and "not found" in err


def test_insecure_registries_come_from_the_state_roots_config(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state.mkdir(parents=True)
    (state / "config.yaml").write_text("insecure_registries: [registry.lan:5000]\nbogus: 1\n")
    code, _, err = run(capsys, "image", "ls")
    assert code == 1
    assert f"{state / 'config.yaml'}:2:1: bogus" in err


def test_ensure_images_follows_each_services_pull_policy(state: Path, tmp_path: Path, registry: Registry, oci_layout: OciLayout) -> None:
    import anyio

    from composer.config.loader import LoadOptions, load_stack
    from composer.errors import ComposerError
    from composer.images import ensure_images
    from composer.settings import Settings

    registry.push(oci_layout.ref("busybox:latest"), "busybox:1")
    (tmp_path / "compose.yaml").write_text(STACK.format(address=registry.address, policy="never"))
    stack = load_stack(LoadOptions(files=(tmp_path / "compose.yaml",), environ={}, working_directory=tmp_path))
    settings = Settings.load()
    with pytest.raises(ComposerError, match=r"service other: image .*multi:1 is not in the image store and pull_policy is never"):
        anyio.run(ensure_images, settings, stack)
    registry.push(oci_layout.ref("multi:latest"), "multi:1")
    (tmp_path / "compose.yaml").write_text(STACK.format(address=registry.address, policy="missing"))
    stack = load_stack(LoadOptions(files=(tmp_path / "compose.yaml",), environ={}, working_directory=tmp_path))
    images = anyio.run(ensure_images, settings, stack)
    assert sorted(images) == ["other", "web"]
    assert images["web"].repo_tags == (registry.image("busybox:1"),)
