"""The value syntaxes: ports, volumes, durations, sizes."""

from __future__ import annotations

from typing import Any

import pytest

from composer.config.types import (
    format_duration,
    list_or_dict,
    parse_bytes,
    parse_duration,
    parse_port,
    parse_volume,
    shell_words,
)


@pytest.mark.parametrize(
    ("short", "expected"),
    [
        ("80", [{"mode": "ingress", "target": 80, "protocol": "tcp"}]),
        (80, [{"mode": "ingress", "target": 80, "protocol": "tcp"}]),
        ("8080:80", [{"mode": "ingress", "target": 80, "protocol": "tcp", "published": "8080"}]),
        ("53:53/udp", [{"mode": "ingress", "target": 53, "protocol": "udp", "published": "53"}]),
        (
            "127.0.0.1:8080:80",
            [
                {
                    "mode": "ingress",
                    "target": 80,
                    "protocol": "tcp",
                    "published": "8080",
                    "host_ip": "127.0.0.1",
                }
            ],
        ),
        (
            "127.0.0.1::80",
            [{"mode": "ingress", "target": 80, "protocol": "tcp", "host_ip": "127.0.0.1"}],
        ),
        (
            "[::1]:8080:80",
            [
                {
                    "mode": "ingress",
                    "target": 80,
                    "protocol": "tcp",
                    "published": "8080",
                    "host_ip": "::1",
                }
            ],
        ),
        (
            "9090-9091:8080-8081",
            [
                {"mode": "ingress", "target": 8080, "protocol": "tcp", "published": "9090"},
                {"mode": "ingress", "target": 8081, "protocol": "tcp", "published": "9091"},
            ],
        ),
        (
            "9090-9095:80",
            [{"mode": "ingress", "target": 80, "protocol": "tcp", "published": "9090-9095"}],
        ),
        (
            "3000-3001",
            [
                {"mode": "ingress", "target": 3000, "protocol": "tcp"},
                {"mode": "ingress", "target": 3001, "protocol": "tcp"},
            ],
        ),
    ],
)
def test_short_port_syntax_becomes_long_syntax(short: Any, expected: list[dict[str, Any]]) -> None:
    assert parse_port(short) == expected


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("http", "not a port mapping"),
        ("70000:80", "out of range"),
        ("80/icmp", "unknown protocol"),
        ("9000-9001:80-82", "the host range has 2 ports"),
        ("90-80", "ends before it starts"),
    ],
)
def test_malformed_ports_say_what_is_wrong(bad: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_port(bad)


@pytest.mark.parametrize(
    ("short", "expected"),
    [
        ("/data", {"type": "volume", "target": "/data"}),
        ("db:/var/lib/db", {"type": "volume", "source": "db", "target": "/var/lib/db"}),
        (
            "./site:/srv:ro",
            {
                "type": "bind",
                "source": "./site",
                "target": "/srv",
                "read_only": True,
                "bind": {"create_host_path": True},
            },
        ),
        (
            "/host:/c:rw,rshared",
            {
                "type": "bind",
                "source": "/host",
                "target": "/c",
                "bind": {"create_host_path": True, "propagation": "rshared"},
            },
        ),
        (
            "cache:/c:nocopy",
            {"type": "volume", "source": "cache", "target": "/c", "volume": {"nocopy": True}},
        ),
        (
            "~/x:/x:z",
            {
                "type": "bind",
                "source": "~/x",
                "target": "/x",
                "bind": {"create_host_path": True, "selinux": "z"},
            },
        ),
    ],
)
def test_short_volume_syntax_becomes_long_syntax(short: str, expected: dict[str, Any]) -> None:
    assert parse_volume(short) == expected


def test_volume_with_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown mode 'rx'"):
        parse_volume("/a:/b:rx")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1m30s", 90),
        ("500ms", 0.5),
        ("1.5h", 5400),
        ("10s", 10),
        ("0", 0),
        (30, 30),
        ("1h1m1s", 3661),
    ],
)
def test_durations_parse_as_go_does(text: Any, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["10", "1x", "s", "-1s", "", True, -5])
def test_bad_durations_are_refused(bad: Any) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (90, "1m30s"),
        (3600, "1h0m0s"),
        (0.5, "500ms"),
        (1.5, "1.5s"),
        (0, "0s"),
        (30, "30s"),
        (0.000001, "1µs"),
    ],
)
def test_durations_print_as_go_prints_them(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("512m", 512 << 20),
        ("1g", 1 << 30),
        ("1GB", 1 << 30),
        ("64k", 65536),
        ("1.5g", 3 << 29),
        (1024, 1024),
        ("100", 100),
        ("2b", 2),
        ("1gib", 1 << 30),
    ],
)
def test_sizes_are_bytes_in_powers_of_1024(text: Any, size: int) -> None:
    assert parse_bytes(text) == size


def test_bad_size_says_what_is_expected() -> None:
    with pytest.raises(ValueError, match=r"e\.g\. '512m'"):
        parse_bytes("lots")


def test_command_strings_split_like_a_shell() -> None:
    assert shell_words("sh -c 'echo \"hi there\"'") == ["sh", "-c", 'echo "hi there"']
    assert shell_words(["a b"]) == ["a b"]


def test_key_value_lists_become_maps() -> None:
    assert list_or_dict(["A=1", "B", "C=x=y"]) == {"A": "1", "B": None, "C": "x=y"}
    assert list_or_dict({"A": 1, "B": True, "C": None}) == {"A": "1", "B": "true", "C": None}
    assert list_or_dict(["flag"], allow_null=False) == {"flag": ""}
