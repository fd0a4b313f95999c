"""A service's container config: capabilities, security options, limits, mounts, sysctls."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from composer.containers import container_config
from composer.errors import ComposerError, StackError
from composer.settings import Settings
from engine.container.health import HealthConfig
from engine.container.spec import DEFAULT_CAPABILITIES
from engine.images.manifest import parse_config
from engine.images.store import Image
from tests.conftest import Load, Write


class FakeStore:
    def layer_link(self, diff_id: str) -> Path:
        return Path("/layers") / diff_id[7:19]


def image(**config: object) -> Image:
    raw = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"], **config}, "rootfs": {"diff_ids": ["sha256:" + "a" * 64]}})
    parsed = parse_config(raw.encode(), "test")
    return Image("sha256:" + "b" * 64, (), (), "", None, parsed, (), 0, 0, 0)  # type: ignore[arg-type]


def config_of(write: Write, load: Load, tmp_path: Path, service: str, **extra: str):  # type: ignore[no-untyped-def]
    write("compose.yaml", "name: demo\nservices:\n  web:\n" + "".join(f"    {line}\n" for line in service.strip().splitlines()) + extra.get("tail", ""))
    stack = load("compose.yaml")
    return container_config(stack.project, "web", 1, image(), FakeStore(), Settings(tmp_path / "state"), raw=stack.raw)  # type: ignore[arg-type]


def test_names_hostname_and_group_follow_compose(write: Write, load: Load, tmp_path: Path) -> None:
    config = config_of(write, load, tmp_path, "image: busybox")
    assert (config.id, config.hostname, config.group) == ("demo-web-1", "demo-web-1", "demo")
    assert config.argv == ("sh",)


def test_cap_add_and_cap_drop_adjust_dockers_defaults(write: Write, load: Load, tmp_path: Path) -> None:
    config = config_of(write, load, tmp_path, "image: busybox\ncap_add: [SYS_ADMIN]\ncap_drop: [NET_RAW, CAP_MKNOD]")
    assert "CAP_SYS_ADMIN" in config.capabilities
    assert "CAP_NET_RAW" not in config.capabilities and "CAP_MKNOD" not in config.capabilities
    assert len(config.capabilities) == len(DEFAULT_CAPABILITIES) - 1


def test_cap_drop_all_then_add_one(write: Write, load: Load, tmp_path: Path) -> None:
    config = config_of(write, load, tmp_path, "image: busybox\ncap_drop: [ALL]\ncap_add: [NET_BIND_SERVICE]")
    assert config.capabilities == ("CAP_NET_BIND_SERVICE",)


def test_privileged_gets_every_capability_and_no_seccomp(write: Write, load: Load, tmp_path: Path) -> None:
    config = config_of(write, load, tmp_path, "image: busybox\nprivileged: true")
    assert "CAP_SYS_MODULE" in config.capabilities and not config.seccomp


def test_no_new_privileges_is_on_unless_turned_off(write: Write, load: Load, tmp_path: Path) -> None:
    assert config_of(write, load, tmp_path, "image: busybox").no_new_privileges
    off = config_of(write, load, tmp_path, 'image: busybox\nsecurity_opt: ["no-new-privileges:false"]')
    assert not off.no_new_privileges
    unconfined = config_of(write, load, tmp_path, 'image: busybox\nsecurity_opt: ["seccomp=unconfined"]')
    assert not unconfined.seccomp


def test_limits_from_service_keys_and_deploy_resources(write: Write, load: Load, tmp_path: Path) -> None:
    config = config_of(write, load, tmp_path, "image: busybox\ncpus: 0.5\nmem_limit: 64m\nmemswap_limit: 128m\npids_limit: 50\ncpu_shares: 512")
    limits = config.limits
    assert (limits.cpu_quota_us, limits.cpu_period_us, limits.cpu_shares) == (50000, 100000, 512)
    assert (limits.memory_limit, limits.memory_swap, limits.pids_limit) == (64 << 20, 128 << 20, 50)
    deploy = config_of(write, load, tmp_path, "image: busybox\ndeploy:\n  resources:\n    limits: {cpus: '1.5', memory: 1g, pids: 9}\n    reservations: {memory: 100m}")
    assert (deploy.limits.cpu_quota_us, deploy.limits.memory_limit, deploy.limits.pids_limit) == (150000, 1 << 30, 9)
    assert deploy.limits.memory_reservation == 100 << 20


def test_a_sysctl_that_is_not_namespaced_is_refused(write: Write, load: Load, tmp_path: Path) -> None:
    ok = config_of(write, load, tmp_path, "image: busybox\nsysctls: {net.ipv4.ip_forward: '1', kernel.shmmax: '1000'}")
    assert dict(ok.sysctls) == {"net.ipv4.ip_forward": "1", "kernel.shmmax": "1000"}
    with pytest.raises(ComposerError, match=r"sysctl vm.swappiness is not namespaced"):
        config_of(write, load, tmp_path, "image: busybox\nsysctls: {vm.swappiness: '1'}")
    with pytest.raises(ComposerError, match=r"net.ipv4.ip_forward is not namespaced.*host's network"):
        config_of(write, load, tmp_path, "image: busybox\nnetwork_mode: host\nsysctls: {net.ipv4.ip_forward: '1'}")


def test_ulimits_become_rlimits(write: Write, load: Load, tmp_path: Path) -> None:
    config = config_of(write, load, tmp_path, "image: busybox\nulimits: {nofile: {soft: 1024, hard: 2048}, nproc: 100}")
    assert [(r.name, r.soft, r.hard) for r in config.rlimits] == [("RLIMIT_NOFILE", 1024, 2048), ("RLIMIT_NPROC", 100, 100)]


def test_a_missing_bind_source_is_made_for_short_syntax_and_an_error_for_long(write: Write, load: Load, tmp_path: Path) -> None:
    config = config_of(write, load, tmp_path, "image: busybox\nvolumes: ['./made:/data:ro']")
    [mount] = config.mounts
    assert (mount.kind, mount.target, mount.read_only) == ("bind", "/data", True)
    assert Path(mount.source).is_dir()
    with pytest.raises(ComposerError, match=r"bind mount source .*absent does not exist"):
        config_of(write, load, tmp_path, "image: busybox\nvolumes: [{type: bind, source: ./absent, target: /x}]")


def test_named_and_anonymous_volumes_are_directories_under_the_state_root(write: Write, load: Load, tmp_path: Path) -> None:
    config = config_of(write, load, tmp_path, "image: busybox\nvolumes: ['data:/data', '/anon']", tail="volumes:\n  data: {}\n")
    named, anonymous = config.mounts
    assert named.source == str(tmp_path / "state/volumes/demo_data/_data") and named.seed
    assert anonymous.source.startswith(str(tmp_path / "state/volumes/")) and anonymous.source != named.source


def test_tmpfs_entries_keep_their_options(write: Write, load: Load, tmp_path: Path) -> None:
    config = config_of(write, load, tmp_path, "image: busybox\ntmpfs: ['/run:size=1m']\nvolumes: [{type: tmpfs, target: /cache, tmpfs: {size: 2m, mode: 1777}}]")
    assert {(m.target, m.options) for m in config.mounts} == {("/run", "size=1m"), ("/cache", "size=2097152,mode=3361")}


def test_logging_options_set_rotation_and_none_drops_output(write: Write, load: Load, tmp_path: Path) -> None:
    config = config_of(write, load, tmp_path, "image: busybox\nlogging: {driver: json-file, options: {max-size: 1m, max-file: '5'}}")
    assert (config.log_driver, config.log_max_size, config.log_max_files) == ("json-file", 1 << 20, 5)
    assert config_of(write, load, tmp_path, "image: busybox\nlogging: {driver: none}").log_driver == "none"
    with pytest.raises(ComposerError, match=r"logging driver 'syslog' is not supported"):
        config_of(write, load, tmp_path, "image: busybox\nlogging: {driver: syslog}")


def test_a_key_that_cannot_be_run_is_reported_at_its_place_in_the_file(write: Write, load: Load, tmp_path: Path) -> None:
    with pytest.raises(StackError) as caught:
        config_of(write, load, tmp_path, "image: busybox\nsysctls:\n  vm.swappiness: '1'")
    [problem] = caught.value.problems
    assert problem.path == "services.web.sysctls['vm.swappiness']"
    assert problem.location is not None and problem.location.line == 6
    assert str(problem).startswith(f"{tmp_path / 'compose.yaml'}:6:")


def test_userns_mode_auto_maps_the_containers_ids_onto_the_settings_range(write: Write, load: Load, tmp_path: Path) -> None:
    assert config_of(write, load, tmp_path, "image: busybox").uid_map == ()
    assert config_of(write, load, tmp_path, "image: busybox\nuserns_mode: host").uid_map == ()
    config = config_of(write, load, tmp_path, "image: busybox\nuserns_mode: auto")
    assert config.uid_map == ((0, 100000, 65536),) and config.gid_map == ((0, 100000, 65536),)


def test_the_userns_range_comes_from_the_state_roots_config(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("userns_range: {uid: 300000, gid: 400000, size: 1000}\n")
    assert Settings.load({"COMPOSER_ROOT": str(tmp_path)}).userns_range == (300000, 400000, 1000)


def test_an_unknown_userns_mode_is_reported_at_its_key(write: Write, load: Load, tmp_path: Path) -> None:
    with pytest.raises(StackError) as caught:
        config_of(write, load, tmp_path, "image: busybox\nuserns_mode: keep-id")
    [problem] = caught.value.problems
    assert problem.path == "services.web.userns_mode" and "auto, host" in str(problem)
    assert problem.location is not None and problem.location.line == 5


def test_restart_is_the_containers_restart_policy(write: Write, load: Load, tmp_path: Path) -> None:
    assert config_of(write, load, tmp_path, "image: busybox").restart == "no"
    assert config_of(write, load, tmp_path, "image: busybox\nrestart: on-failure:3").restart == "on-failure:3"
    assert config_of(write, load, tmp_path, "image: busybox\nrestart: unless-stopped").restart == "unless-stopped"


@pytest.mark.parametrize(("policy", "restart"), [
    ("{condition: any}", "always"),
    ("{condition: none}", "no"),
    ("{condition: on-failure}", "on-failure"),
    ("{condition: on-failure, max_attempts: 4}", "on-failure:4"),
    ("{max_attempts: 4}", "always"),  # condition defaults to any
])  # fmt: skip
def test_deploy_restart_policy_applies_when_restart_is_absent(write: Write, load: Load, tmp_path: Path, policy: str, restart: str) -> None:
    assert config_of(write, load, tmp_path, f"image: busybox\ndeploy:\n  restart_policy: {policy}").restart == restart
    both = config_of(write, load, tmp_path, f"image: busybox\nrestart: 'no'\ndeploy:\n  restart_policy: {policy}")
    assert both.restart == "no"


def test_a_healthcheck_becomes_the_containers_probe(write: Write, load: Load, tmp_path: Path) -> None:
    config = config_of(write, load, tmp_path, "image: busybox\nhealthcheck:\n  test: curl -f http://localhost/ || exit 1\n  interval: 1m30s\n  timeout: 5s\n  retries: 5\n  start_period: 10s\n  start_interval: 1s")
    assert config.healthcheck == HealthConfig(("/bin/sh", "-c", "curl -f http://localhost/ || exit 1"), interval=90.0, timeout=5.0, start_period=10.0, start_interval=1.0, retries=5)
    exec_form = config_of(write, load, tmp_path, "image: busybox\nhealthcheck:\n  test: [CMD, pg_isready, -U, app]")
    assert exec_form.healthcheck == HealthConfig(("pg_isready", "-U", "app"))  # Docker's defaults


def test_a_disabled_healthcheck_is_none(write: Write, load: Load, tmp_path: Path) -> None:
    assert config_of(write, load, tmp_path, "image: busybox").healthcheck is None
    assert config_of(write, load, tmp_path, "image: busybox\nhealthcheck:\n  disable: true").healthcheck is None
    assert config_of(write, load, tmp_path, "image: busybox\nhealthcheck:\n  test: [NONE]").healthcheck is None


def test_a_healthcheck_without_test_takes_the_images(write: Write, load: Load, tmp_path: Path) -> None:
    write("compose.yaml", "name: demo\nservices:\n  web:\n    image: app\n    healthcheck:\n      interval: 2s\n")
    stack = load("compose.yaml")
    probe = {"Test": ["CMD-SHELL", "test -e /ready"], "Interval": 10_000_000_000, "Retries": 7}
    config = container_config(stack.project, "web", 1, image(Healthcheck=probe), FakeStore(), Settings(tmp_path / "state"))  # type: ignore[arg-type]
    assert config.healthcheck == HealthConfig(("/bin/sh", "-c", "test -e /ready"), interval=2.0, retries=7)
    write("compose.yaml", "name: demo\nservices:\n  web:\n    image: app\n    healthcheck: {disable: true}\n")
    stack = load("compose.yaml")
    assert container_config(stack.project, "web", 1, image(Healthcheck=probe), FakeStore(), Settings(tmp_path / "state")).healthcheck is None  # type: ignore[arg-type]


def test_the_services_labels_go_on_its_containers_but_not_over_ours(write: Write, load: Load, tmp_path: Path) -> None:
    config = config_of(write, load, tmp_path, "image: busybox\nlabels: {team: web, composer.service: other}")
    labels = dict(config.labels)
    assert labels["team"] == "web" and labels["composer.service"] == "web"
