"""Interpolation behaves as docker compose v2 (compose-go's template package and its tests)."""

from __future__ import annotations

import pytest

from composer.config.interpolation import InterpolationError, Substitution, substitute

# compose-go's template tests use FOO=first and BAR="" (set but empty); UNSET is not set.
ENV = {"FOO": "first", "BAR": "", "HOST": "db", "PORT": "5432"}


def lookup(name: str) -> str | None:
    return ENV.get(name)


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        # no interpolation at all
        ("foo", "foo"),
        ("", ""),
        # escapes
        ("$${foo}", "${foo}"),
        ("$$FOO", "$FOO"),
        ("$$$FOO", "$first"),
        ("a $$ b", "a $ b"),
        # a `$` not followed by `$`, `{` or a name start stays as it is
        ("a $ string", "a $ string"),
        ("^REGEX$", "^REGEX$"),
        ("$}", "$}"),
        ("$", "$"),
        ("$1", "$1"),
        ("cost: $5 $-", "cost: $5 $-"),
        ("$ $FOO", "$ first"),
        # $VAR and ${VAR}
        ("This $FOO var", "This first var"),
        ("This ${FOO} var", "This first var"),
        ("This ${missing} var", "This  var"),
        ("This ${BAR} var", "This  var"),
        ("$FOO-bar", "first-bar"),
        ("$FOObar", ""),
        ("${FOO}bar", "firstbar"),
        ("$HOST:$PORT", "db:5432"),
        ("${FOO}}", "first}"),
        # ${VAR:-default}: default when unset or empty
        ("ok ${missing:-def}", "ok def"),
        ("ok ${BAR:-def}", "ok def"),
        ("ok ${FOO:-def}", "ok first"),
        ("ok ${missing:-}", "ok "),
        # ${VAR-default}: default only when unset
        ("ok ${missing-def}", "ok def"),
        ("ok ${BAR-def}", "ok "),
        ("ok ${FOO-def}", "ok first"),
        # ${VAR:+alt}: alt when set and non-empty, else empty
        ("ok ${UNSET_VAR:+presence_value}", "ok "),
        ("ok ${BAR:+presence_value}", "ok "),
        ("ok ${FOO:+presence_value}", "ok presence_value"),
        # ${VAR+alt}: alt when set, else empty
        ("ok ${UNSET_VAR+presence_value}", "ok "),
        ("ok ${BAR+presence_value}", "ok presence_value"),
        ("ok ${FOO+presence_value}", "ok presence_value"),
        # ${VAR:?err} and ${VAR?err} when the variable is there
        ("ok ${FOO:?err}", "ok first"),
        ("ok ${FOO?err}", "ok first"),
        ("ok ${BAR?err}", "ok "),
        # the operator is the one right after the name; the rest is the argument
        ("ok ${BAR:-/non:-alphanumeric}", "ok /non:-alphanumeric"),
        ("${UNSET_VAR-myerror?msg}", "myerror?msg"),
        ("${FOO?bar-baz}", "first"),
        ("${UNSET:--x}", "-x"),
        ("${UNSET-:-x}", ":-x"),
        ("${UNSET:-a=b,c:d}", "a=b,c:d"),
        # text around a template does not change which operator applies
        ("-ok ${BAR:-defaultValue}", "-ok defaultValue"),
        ("+ok ${UNSET:-${BAR-defaultValue}}", "+ok "),
        (":-ok ${UNSET-defaultValue}", ":-ok defaultValue"),
        (":?ok ${BAR-defaultValue}", ":?ok "),
        (":+ok ${BAR:-defaultValue}", ":+ok defaultValue"),
        ("?ok ${BAR:-defaultValue}", "?ok defaultValue"),
        # arguments are interpolated, nested arbitrarily
        ("ok ${UNSET_VAR-$FOO}", "ok first"),
        ("ok ${UNSET_VAR-${FOO}}", "ok first"),
        ("ok ${UNSET_VAR-${FOO} ${FOO}}", "ok first first"),
        ("ok ${BAR:-$FOO}", "ok first"),
        ("ok ${BAR:-${FOO} ${FOO}}", "ok first first"),
        ("ok ${BAR+$FOO}", "ok first"),
        ("ok ${BAR+$FOO ${FOO:+second}}", "ok first second"),
        ("${A:-${B:-x}}", "x"),
        ("${A:-${B:-${C:-${FOO}}}}", "first"),
        ("${A:-pre-$FOO-post}", "pre-first-post"),
        ("${A:-$$FOO}", "$FOO"),
        ("${FOO:+[${HOST}:${PORT}]}", "[db:5432]"),
        # the argument ends at the `}` balancing the opening brace
        ("${A:-x}}", "x}"),
        ("${A:-x} and ${FOO}", "x and first"),
        ("${A:-x}-${B:-y}", "x-y"),
        ("${A:-{}}", "{}"),
        ('${A:-{"k": 1}}', '{"k": 1}'),
        # ...and, when braces do not balance, at the last `}` of the line
        ("${A:-{}", "{"),
        ("${A:-a{b}", "a{b"),
        # compose does not examine the character after a `{` when balancing braces
        ("${A:-{}}x}", "{}}x"),
        # templates on later lines are independent
        ("${A:-x}\n${B:-y}", "x\ny"),
        ("line one $FOO\nline two ${BAR:-two}", "line one first\nline two two"),
    ],
)
def test_substitutes_like_compose(template: str, expected: str) -> None:
    assert substitute(template, lookup).value == expected


@pytest.mark.parametrize(
    ("template", "unset"),
    [
        ("no variables", ()),
        ("$FOO ${BAR}", ()),
        ("$MISSING", ("MISSING",)),
        ("${MISSING}", ("MISSING",)),
        ("$B $A ${B} $C $A", ("B", "A", "C")),
        # operator forms never report their own variable
        ("${A:-x}${B-x}${C:+x}${D+x}", ()),
        # ...but the argument is always interpolated, used or not
        ("${A:-$B}", ("B",)),
        ("${FOO:-$B}", ("B",)),
        ("${FOO+${B}}", ("B",)),
        ("${A:-${B:-$C}} $D", ("C", "D")),
        ("$$ESCAPED", ()),
    ],
)
def test_reports_unset_variables_in_order(template: str, unset: tuple[str, ...]) -> None:
    assert substitute(template, lookup).unset == unset


@pytest.mark.parametrize(
    ("template", "message"),
    [
        (
            "not ok ${UNSET_VAR:?Mandatory Variable Unset}",
            "required variable UNSET_VAR is missing a value: Mandatory Variable Unset",
        ),
        (
            "not ok ${BAR:?Mandatory Variable Empty}",
            "required variable BAR is missing a value: Mandatory Variable Empty",
        ),
        ("not ok ${UNSET_VAR:?}", "required variable UNSET_VAR is missing a value"),
        (
            "not ok ${UNSET_VAR?Mandatory Variable Unset}",
            "required variable UNSET_VAR is missing a value: Mandatory Variable Unset",
        ),
        ("not ok ${UNSET_VAR?}", "required variable UNSET_VAR is missing a value"),
        ("${UNSET_VAR?bar-baz}", "required variable UNSET_VAR is missing a value: bar-baz"),
        # the message is interpolated
        (
            "not ok ${UNSET_VAR:?Mandatory Variable ${FOO}}",
            "required variable UNSET_VAR is missing a value: Mandatory Variable first",
        ),
        (
            "not ok ${UNSET_VAR?Mandatory Variable ${FOO}}",
            "required variable UNSET_VAR is missing a value: Mandatory Variable first",
        ),
        ("${UNSET_VAR:?$BAR}", "required variable UNSET_VAR is missing a value"),
        # nested, and raised even from an argument that ends up unused
        ("${A:-${B:?need B}}", "required variable B is missing a value: need B"),
        ("${FOO:-${B:?need B}}", "required variable B is missing a value: need B"),
        # the first failure in the template wins
        ("${X:?first} ${Y:?second}", "required variable X is missing a value: first"),
    ],
)
def test_missing_required_variable_raises(template: str, message: str) -> None:
    with pytest.raises(InterpolationError) as caught:
        substitute(template, lookup)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    "template",
    [
        "${",
        "${}",
        "${ }",
        "${ foo}",
        "${foo }",
        "${foo!}",
        "${VAR",
        "${VAR:x}",
        "${VAR:}",
        "${VAR::-x}",
        "${1}",
        "${$FOO}",
        "ok ${FOO} then ${",
        "${VAR:-x",
        "${A:-x} ${B:-y",
        # an argument cannot span lines
        "${VAR:-a\nb}",
        # nested templates are held to the same rules
        "${A:-${}}",
        "${A:-${B}",
    ],
)
def test_malformed_template_raises(template: str) -> None:
    with pytest.raises(InterpolationError) as caught:
        substitute(template, lookup)
    message = str(caught.value)
    assert message.startswith("invalid interpolation format for ")
    assert message.endswith(": you may need to escape any $ with another $")
    quoted = message.removeprefix("invalid interpolation format for ").split(": you may", 1)[0]
    assert quoted == '"' + template.replace("\n", "\\n") + '"'


def test_template_without_dollar_never_calls_lookup() -> None:
    def refuse(name: str) -> str | None:
        raise AssertionError(f"looked up {name}")

    result = substitute("image: nginx:1.25 # no variables", refuse)
    assert result == Substitution("image: nginx:1.25 # no variables", ())


def test_lookup_distinguishes_empty_from_unset() -> None:
    values = {"EMPTY": ""}
    result = substitute("[${EMPTY-d}][${UNSET-d}][${EMPTY:-d}][$EMPTY]", values.get)
    assert result == Substitution("[][d][d][]", ())


def test_error_does_not_leak_partial_results() -> None:
    with pytest.raises(InterpolationError, match="required variable X"):
        substitute("$MISSING ${X:?}", lookup)
