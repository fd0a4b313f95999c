"""Which images a stack needs, and when each is pulled (pull_policy)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from composer.images import ImageNeed, decide, images_in_use, stack_images
from composer.settings import Settings
from engine.images.reference import parse_reference
from engine.images.store import Image
from tests.conftest import Load, Write


def test_each_image_is_needed_once_with_the_most_eager_policy(write: Write, load: Load) -> None:
    write("compose.yaml", """
        services:
          a: {image: busybox}
          b: {image: "docker.io/library/busybox:latest", pull_policy: always}
          c: {image: "me/app:1", pull_policy: never}
          d: {build: ., image: "me/built:1"}
          e: {build: .}
    """)
    needs = stack_images(load("compose.yaml"))
    assert needs == [
        ImageNeed(parse_reference("busybox"), ("a", "b"), "always"),
        ImageNeed(parse_reference("me/app:1"), ("c",), "never"),
        ImageNeed(parse_reference("me/built:1"), ("d",), "build"),
    ]


def fake_image(updated: float) -> Image:
    return Image("sha256:" + "0" * 64, (), (), "", None, None, (), 0, updated, updated)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("policy", "present_age", "decision"),
    [
        ("always", 0, "pull"),
        ("missing", None, "pull"),
        ("missing", 0, "use"),
        ("if_not_present", 0, "use"),
        ("never", None, "missing"),
        ("never", 0, "use"),
        ("build", None, "missing"),
        ("daily", 3600, "use"),
        ("daily", 90000, "pull"),
        ("weekly", 90000, "use"),
        ("every_12h", 50000, "pull"),
        ("every_12h", 3600, "use"),
    ],
)
def test_pull_policy_decides_whether_to_pull(policy: str, present_age: float | None, decision: str) -> None:
    now = time.time()
    present = None if present_age is None else fake_image(now - present_age)
    assert decide(ImageNeed(parse_reference("x"), ("s",), policy), present, now) == decision


def test_images_in_use_are_read_from_container_records(tmp_path: Path) -> None:
    settings = Settings(tmp_path)
    for name, image_id in (("a", "sha256:1"), ("b", "sha256:2"), ("c", "sha256:1")):
        (settings.containers / name).mkdir(parents=True)
        (settings.containers / name / "image-id").write_text(image_id + "\n")
    assert images_in_use(settings) == {"sha256:1", "sha256:2"}


def test_settings_come_from_composer_root(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("insecure_registries: [r.lan:5000]\n")
    assert Settings.load({"COMPOSER_ROOT": str(tmp_path)}) == Settings(tmp_path, ("r.lan:5000",))
    assert Settings.load({}).root == Path("/var/lib/composer")
