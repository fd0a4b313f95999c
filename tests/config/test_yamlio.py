"""YAML is read as compose reads it: 1.2 scalars, safe, located, bounded."""

from __future__ import annotations

import math

import pytest

from composer.config.yamlio import MAX_FILE_BYTES, MarkedMap, load_yaml, locate
from composer.errors import Location, StackError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("22:22", "22:22"),
        ("no", "no"),
        ("on", "on"),
        ("yes", "yes"),
        ("off", "off"),
        ("true", True),
        ("False", False),
        ("~", None),
        ("null", None),
        ("", None),
        ("42", 42),
        ("-7", -7),
        ("0o17", 15),
        ("0x1f", 31),
        ("1.5", 1.5),
        ("1e3", 1000.0),
        ("'42'", "42"),
        ('"true"', "true"),
        ("1_000", "1_000"),
        ("0b101", "0b101"),
        ("2024-01-01", "2024-01-01"),
    ],
)
def test_scalars_follow_yaml_1_2_core_schema(text: str, expected: object) -> None:
    assert load_yaml(f"v: {text}\n", "f.yaml")["v"] == expected


def test_infinity_and_nan_are_floats() -> None:
    data = load_yaml("a: .inf\nb: -.Inf\nc: .nan\n", "f.yaml")
    assert data["a"] == math.inf and data["b"] == -math.inf and math.isnan(data["c"])


def test_every_value_knows_its_file_line_and_column() -> None:
    data = load_yaml("services:\n  web:\n    ports:\n      - 80\n      - '8080:80'\n", "s.yaml")
    assert locate(data, ("services", "web", "ports", 1)) == Location("s.yaml", 5, 9)
    assert locate(data, ("services", "web")) == Location("s.yaml", 2, 3)


def test_locate_stops_at_the_deepest_existing_entry() -> None:
    data = load_yaml("services:\n  web:\n    image: x\n", "s.yaml")
    assert locate(data, ("services", "web", "ports", 3)) == Location("s.yaml", 2, 3)


def test_anchors_and_merge_keys_expand_with_explicit_keys_winning() -> None:
    text = (
        "x-base: &base\n  restart: always\n  image: a\n"
        "services:\n  web:\n    <<: *base\n    image: b\n"
    )
    web = load_yaml(text, "f.yaml")["services"]["web"]
    assert web == {"image": "b", "restart": "always"}


def test_merge_key_with_a_list_prefers_earlier_mappings() -> None:
    text = "a: &a {k: 1}\nb: &b {k: 2, j: 3}\nc:\n  <<: [*a, *b]\n"
    assert load_yaml(text, "f.yaml")["c"] == {"k": 1, "j": 3}


def test_aliased_values_are_independent_copies() -> None:
    data = load_yaml("a: &x [1]\nb: *x\n", "f.yaml")
    data["a"].append(2)
    assert data["b"] == [1]


def test_alias_bomb_is_refused() -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 9):
        prev = chr(ord("a") + i - 1)
        cur = chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [{', '.join(['*' + prev] * 9)}]")
    with pytest.raises(StackError, match="alias bomb"):
        load_yaml("\n".join(lines), "bomb.yaml")


def test_oversized_file_is_refused_before_parsing() -> None:
    with pytest.raises(StackError, match="bytes"):
        load_yaml("a: 1\n" + "#" * MAX_FILE_BYTES, "big.yaml")


def test_duplicate_key_is_an_error_at_the_second_key() -> None:
    with pytest.raises(StackError) as info:
        load_yaml("services:\n  web: {}\n  web: {}\n", "d.yaml")
    assert info.value.problems[0].location == Location("d.yaml", 3, 3)
    assert "already defined" in info.value.problems[0].message


def test_syntax_error_names_the_line() -> None:
    with pytest.raises(StackError) as info:
        load_yaml("services:\n  web:\n    image: [a\n", "bad.yaml")
    problem = info.value.problems[0]
    assert problem.location is not None and problem.location.file == "bad.yaml"
    assert problem.location.line >= 3
    assert problem.message.startswith("invalid YAML")


def test_unsafe_tags_are_refused() -> None:
    with pytest.raises(StackError, match="unsupported YAML tag"):
        load_yaml("a: !!python/object:os.system ls\n", "evil.yaml")


def test_reset_and_override_tags_are_remembered_on_the_key() -> None:
    data = load_yaml("a: !reset []\nb: !override {x: 1}\n", "f.yaml")
    assert isinstance(data, MarkedMap)
    assert data.tags == {"a": "!reset", "b": "!override"}
    assert data["b"] == {"x": 1}


def test_keys_are_strings_even_when_they_look_like_numbers() -> None:
    assert load_yaml("80: a\ntrue: b\n", "f.yaml") == {"80": "a", "true": "b"}


def test_empty_document_is_none() -> None:
    assert load_yaml("# nothing\n", "f.yaml") is None


def test_leading_zero_integers_are_octal_as_compose_reads_them() -> None:
    assert load_yaml("mode: 0440\nplain: 10\nzero: 0\n", "f.yaml") == {
        "mode": 288,
        "plain": 10,
        "zero": 0,
    }
