"""Env files parse as docker compose v2 parses them (compose-go's dotenv package and its tests)."""

from __future__ import annotations

import pytest

from composer.config.dotenv import DotenvError, parse_dotenv

# What the caller's lookup (the process environment, in compose) knows.
ENVIRONMENT = {"ME": "YES", "FROM_ENV": "env", "EMPTY_ENV": "", "OPTION_A": "5"}


def lookup(name: str) -> str | None:
    return ENVIRONMENT.get(name)


def nothing(name: str) -> str | None:
    return None


@pytest.mark.parametrize(
    ("text", "key", "value"),
    [
        # unquoted values, blanks around `=` and around the value
        ("FOO=bar", "FOO", "bar"),
        ("FOO =bar", "FOO", "bar"),
        ("FOO= bar", "FOO", "bar"),
        ("FOO = bar \t", "FOO", "bar"),
        ("FOO=bar ", "FOO", "bar"),
        ("FOO=foobar=", "FOO", "foobar="),
        ("FOO=a b  c", "FOO", "a b  c"),
        ("FOO=", "FOO", ""),
        ("FOO=\n", "FOO", ""),
        ("FOO=bar\r\n", "FOO", "bar"),
        # quoted values
        ('FOO="bar"', "FOO", "bar"),
        ("FOO='bar'", "FOO", "bar"),
        ('FOO=""', "FOO", ""),
        ("FOO=''", "FOO", ""),
        ('FOO="escaped\\"bar"', "FOO", 'escaped"bar'),
        ('FOO="\\"quoted\\""', "FOO", '"quoted"'),
        ("FOO=\"'d'\"", "FOO", "'d'"),
        ("OPTION_I = \"echo 'asd'\"", "OPTION_I", "echo 'asd'"),
        # yaml-style `KEY: VALUE`
        ("OPTION_A: 1", "OPTION_A", "1"),
        ("OPTION_A: Foo=bar", "OPTION_A", "Foo=bar"),
        ("OPTION_A:1", "OPTION_A", "1"),
        ("OPTION_A=1:B", "OPTION_A", "1:B"),
        (
            "OPTION_A=postgres://localhost:5432/db?sslmode=disable",
            "OPTION_A",
            "postgres://localhost:5432/db?sslmode=disable",
        ),
        # export
        ("export OPTION_A=2", "OPTION_A", "2"),
        ("export OPTION_B='\\n'", "OPTION_B", "\\n"),
        ("export exportFoo=2", "exportFoo", "2"),
        ("exportFOO=2", "exportFOO", "2"),
        ("export_FOO =2", "export_FOO", "2"),
        ("export.FOO= 2", "export.FOO", "2"),
        ("export\tOPTION_A=2", "OPTION_A", "2"),
        ("  export OPTION_A=2", "OPTION_A", "2"),
        ("\texport OPTION_A=2", "OPTION_A", "2"),
        ('export OPTION_A="export A"', "OPTION_A", "export A"),
        ("export=1", "export", "1"),
        # escapes: only in double quotes
        ('FOO="bar\\nbaz"', "FOO", "bar\nbaz"),
        ("FOO=a\\tb", "FOO", "a\\tb"),
        ('FOO="a\\tb"', "FOO", "a\tb"),
        ("FOO='a\\tb'", "FOO", "a\\tb"),
        ('KEY="Z\\aZ\\bZ\\fZ\\nZ\\rZ\\tZ\\vZ\\\\Z\\0123Z"', "KEY", "Z\aZ\bZ\fZ\nZ\rZ\tZ\vZ\\ZSZ"),
        ('FOO="bar\\n\\ b\\az"', "FOO", "bar\n\\ b\az"),
        ('FOO="bar\\\\\\n\\ b\\az"', "FOO", "bar\\\n\\ b\az"),
        ('FOO="bar\\\\r\\ b\\az"', "FOO", "bar\\r\\ b\az"),
        ('FOO="bar\\nbaz\\\\"', "FOO", "bar\nbaz\\"),
        ('KEY="\\0123"', "KEY", "S"),
        ('KEY="\\0351t\\0351"', "KEY", "été"),
        ('KEY="\\012"', "KEY", "\\012"),
        ('KEY="\\0777"', "KEY", "\\0777"),
        ('KEY="\\01234"', "KEY", "S4"),
        ('KEY="\\x07"', "KEY", "\\x07"),
        ('KEY="\\u12e4"', "KEY", "\\u12e4"),
        ('KEY="\\U00101234"', "KEY", "\\U00101234"),
        ('KEY="\\c\\q\\\'"', "KEY", "\\c\\q\\'"),
        # single quotes: literal, except that \' stands for '
        ("KEY='it\\'s'", "KEY", "it's"),
        ("KEY='a\\\\b'", "KEY", "a\\\\b"),
        ("KEY='$ME ${ME}'", "KEY", "$ME ${ME}"),
        # comments
        ("FOO=bar # this is foo", "FOO", "bar"),
        ("FOO=bar #this is foo", "FOO", "bar"),
        ("FOO=bar #", "FOO", "bar"),
        ("FOO=123#not-an-inline-comment", "FOO", "123#not-an-inline-comment"),
        (
            "FOO=bar\t# a tab does not start a comment",
            "FOO",
            "bar\t# a tab does not start a comment",
        ),
        ("FOO=  # right after the = is no comment", "FOO", "# right after the = is no comment"),
        ('FOO="bar#baz"', "FOO", "bar#baz"),
        ('FOO="bar#baz"#', "FOO", "bar#baz"),
        ('FOO="bar#baz" # comment', "FOO", "bar#baz"),
        ("FOO='bar#baz' # comment", "FOO", "bar#baz"),
        ('FOO="bar#baz#bang" # comment', "FOO", "bar#baz#bang"),
        ('FOO="ba#r"', "FOO", "ba#r"),
        ("FOO='ba#r'", "FOO", "ba#r"),
        # keys
        ("FOO.BAR=foobar", "FOO.BAR", "foobar"),
        ("VAR-WITH-DASHES=dashes", "VAR-WITH-DASHES", "dashes"),
        ("a[1]=c", "a[1]", "c"),
        (
            "árvíztűrő-TÜKÖRFÚRÓGÉP=ÁRVÍZTŰRŐ-tükörfúrógép",
            "árvíztűrő-TÜKÖRFÚRÓGÉP",
            "ÁRVÍZTŰRŐ-tükörfúrógép",
        ),
        ("1KEY=digit first", "1KEY", "digit first"),
        ('="value"', "", "value"),
        # leading blanks
        (" KEY =value", "KEY", "value"),
        ("   KEY=value", "KEY", "value"),
        ("\tKEY=value", "KEY", "value"),
        # a UTF-8 byte order mark is skipped
        ("\ufeffKEY=value", "KEY", "value"),
    ],
)
def test_parses_statement(text: str, key: str, value: str) -> None:
    result = parse_dotenv(text, nothing)
    assert result == {key: value}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # blank and comment lines
        ("", {}),
        ("\n", {}),
        ("\r\n", {}),
        ("\t\t ", {}),
        ("# Comment", {}),
        ("\t # comment", {}),
        ("#A=1\n  # B=2\n\nC=3\n# D=4", {"C": "3"}),
        # compose-go's fixtures/plain.env
        (
            "OPTION_A=1\nOPTION_B=2\nOPTION_C= 3\nOPTION_D =4\nOPTION_E = 5\nOPTION_F = \n"
            "OPTION_G=\nOPTION_H = my string # Inline comment\n",
            {
                "OPTION_A": "1",
                "OPTION_B": "2",
                "OPTION_C": "3",
                "OPTION_D": "4",
                "OPTION_E": "5",
                "OPTION_F": "",
                "OPTION_G": "",
                "OPTION_H": "my string",
            },
        ),
        # compose-go's fixtures/quoted.env: quoted values may span lines
        (
            "OPTION_A='1'\nOPTION_B='2'\nOPTION_C=''\nOPTION_D='\\n'\nOPTION_E=\"1\"\n"
            'OPTION_F="2"\nOPTION_G=""\nOPTION_H="\\n"\nOPTION_I = "echo \'asd\'"\n'
            "OPTION_J = 'first line\nsecond line\nthird line\nand so on'\n"
            'OPTION_Z = "last value"\n',
            {
                "OPTION_A": "1",
                "OPTION_B": "2",
                "OPTION_C": "",
                "OPTION_D": "\\n",
                "OPTION_E": "1",
                "OPTION_F": "2",
                "OPTION_G": "",
                "OPTION_H": "\n",
                "OPTION_I": "echo 'asd'",
                "OPTION_J": "first line\nsecond line\nthird line\nand so on",
                "OPTION_Z": "last value",
            },
        ),
        (
            'TEST_URLS="stratum+tcp://a.example:3333\nstratum+tcp://a.example:443"',
            {"TEST_URLS": "stratum+tcp://a.example:3333\nstratum+tcp://a.example:443"},
        ),
        ("ONE=1\nTWO='2'\nTHREE = \"3\"", {"ONE": "1", "TWO": "2", "THREE": "3"}),
        # later definitions win
        ("A=1\nA=2\n", {"A": "2"}),
        # what follows a closing quote is read as the next statement
        ('A="x" B=2\n', {"A": "x", "B": "2"}),
        ("A='x'B=2\n", {"A": "x", "B": "2"}),
        ('A="x"FROM_ENV\nB=3', {"A": "x", "FROM_ENV": "env", "B": "3"}),
        # `export` alone on its line names no variable
        ("export\nA=1\n", {"A": "1"}),
    ],
)
def test_parses_file(text: str, expected: dict[str, str]) -> None:
    assert parse_dotenv(text, lookup) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("FROM_ENV\n", {"FROM_ENV": "env"}),
        ("FROM_ENV", {"FROM_ENV": "env"}),
        ("  FROM_ENV  \n", {"FROM_ENV": "env"}),
        ("export FROM_ENV\n", {"FROM_ENV": "env"}),
        ("EMPTY_ENV\n", {"EMPTY_ENV": ""}),
        ("VARIABLE_NOT_FOUND\n", {}),
        ("FOO=bar\nVARIABLE_NOT_FOUND\nBAR=baz\n", {"FOO": "bar", "BAR": "baz"}),
        ("FOO=bar\nVARIABLE_NOT_FOUND", {"FOO": "bar"}),
        # a bare key only consults the lookup, never the file itself
        ("NOT_IN_ENV=1\nNOT_IN_ENV\n", {"NOT_IN_ENV": "1"}),
        ("FROM_ENV=file\nFROM_ENV\n", {"FROM_ENV": "env"}),
        # `KEY=` is the empty string, not a lookup
        ("FROM_ENV=\n", {"FROM_ENV": ""}),
    ],
)
def test_bare_key_takes_value_from_lookup(text: str, expected: dict[str, str]) -> None:
    assert parse_dotenv(text, lookup) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("FOO=test\nBAR=$FOO", {"FOO": "test", "BAR": "test"}),
        ("FOO=test\nBAR=${FOO}bar", {"FOO": "test", "BAR": "testbar"}),
        ("BAR=$FOO", {"BAR": ""}),
        ('FOO=test\nBAR="quote $FOO"', {"FOO": "test", "BAR": "quote test"}),
        ("BAR='quote $FOO'", {"BAR": "quote $FOO"}),
        ('FOO="foo\\$BAR"', {"FOO": "foo$BAR"}),
        ('FOO="foo\\${BAR}"', {"FOO": "foo${BAR}"}),
        ('FOO=test\nBAR="foo\\${FOO} ${FOO}"', {"FOO": "test", "BAR": "foo${FOO} test"}),
        ("FOO=$$BAR", {"FOO": "$BAR"}),
        ("TEST=$ME", {"TEST": "YES"}),
        # a value sees variables defined earlier in the file, not later
        ("A=$B\nB=1\n", {"A": "", "B": "1"}),
        # the lookup wins over the file's own earlier definitions (compose's
        # fixtures/substitutions.env, with OPTION_A=5 in the environment)
        (
            "OPTION_A=1\nOPTION_B=${OPTION_A}\nOPTION_C=$OPTION_B\n"
            "OPTION_D=${OPTION_A}_${OPTION_B}\nOPTION_E=${OPTION_NOT_DEFINED}\n",
            {
                "OPTION_A": "1",
                "OPTION_B": "5",
                "OPTION_C": "5",
                "OPTION_D": "5_5",
                "OPTION_E": "",
            },
        ),
        # compose's fixtures/substitutions-default.env, same environment
        (
            "OPTION_A=${OPTION_A:-1}\nOPTION_B=${OPTION_A}\nOPTION_C=$OPTION_B\n"
            "OPTION_D=${OPTION_A}_${OPTION_B}\nOPTION_E=${OPTION_NOT_DEFINED}\n",
            {
                "OPTION_A": "5",
                "OPTION_B": "5",
                "OPTION_C": "5",
                "OPTION_D": "5_5",
                "OPTION_E": "",
            },
        ),
        # every operator works in env files
        ("RESULT=${UNSET_VAR:-Default Value}", {"RESULT": "Default Value"}),
        ("RESULT=${EMPTY_ENV:-Default Value}", {"RESULT": "Default Value"}),
        ("RESULT=${FROM_ENV:-Default Value}", {"RESULT": "env"}),
        ("RESULT=${UNSET_VAR-Default Value}", {"RESULT": "Default Value"}),
        ("RESULT=${EMPTY_ENV-Default Value}", {"RESULT": ""}),
        ("RESULT=${EMPTY_ENV?Test error}", {"RESULT": ""}),
        ("RESULT=${FROM_ENV:?Default Value}", {"RESULT": "env"}),
        ("RESULT=${FROM_ENV:+alt}${EMPTY_ENV+set}", {"RESULT": "altset"}),
        ('A=x\nB="${A:+[$A]}"', {"A": "x", "B": "[x]"}),
    ],
)
def test_interpolates_values(text: str, expected: dict[str, str]) -> None:
    assert parse_dotenv(text, lookup) == expected


def test_lookup_is_not_consulted_for_a_defined_key() -> None:
    # Unlike compose v1, the file's value stands even when the environment has the key.
    assert parse_dotenv("FROM_ENV=file\n", lookup) == {"FROM_ENV": "file"}


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        # keys
        ("lol$wut", 1, 'unexpected character "$" in variable name "lol$wut"'),
        (
            "%!(EXTRA string)=foo",
            1,
            'unexpected character "%" in variable name "%!(EXTRA string)=foo"',
        ),
        ("A=1\n\n# c\nB C=2\n", 4, 'key cannot contain a space: "B C"'),
        ("A=1\nexport B C=2\n", 2, 'key cannot contain a space: "B C"'),
        ("A=1\nB C\n", 2, 'key cannot contain a space: "B C"'),
        ("A='x' y z\n", 1, 'key cannot contain a space: "y z"'),
        ("A=1\nKEY # comment\n", 2, 'unexpected character "#" in variable name "KEY # comment"'),
        ('A=1\n"KEY"=1\n', 2, 'unexpected character "\\"" in variable name "\\"KEY\\"=1"'),
        ("A=\n'x'\n", 2, 'unexpected character "\'" in variable name "\'x\'"'),
        ("A=1\nexport ", 2, "no variable name after export"),
        # unterminated quotes: reported where the quote opens
        ('KEY="', 1, 'unterminated quoted value "'),
        ('KEY="value', 1, 'unterminated quoted value "value'),
        ('KEY="value\\"', 1, 'unterminated quoted value "value\\"'),
        ("KEY=\"value'", 1, "unterminated quoted value \"value'"),
        ("KEY='", 1, "unterminated quoted value '"),
        ("KEY='value", 1, "unterminated quoted value 'value"),
        ("KEY='value\\'", 1, "unterminated quoted value 'value\\'"),
        ("KEY='value\"", 1, "unterminated quoted value 'value\""),
        ('KEY="value\\', 1, 'unterminated quoted value "value\\'),
        ('A=1\nB="two\nlines\nC=3\n', 2, 'unterminated quoted value "two'),
        ("A='one\nline'\nB='open\n", 3, "unterminated quoted value 'open"),
        # interpolation errors carry the line of their statement
        (
            "A=1\nRESULT=${UNSET_VAR:?Test error}\n",
            2,
            "required variable UNSET_VAR is missing a value: Test error",
        ),
        (
            "RESULT=${EMPTY_ENV:?Test error}",
            1,
            "required variable EMPTY_ENV is missing a value: Test error",
        ),
        ("RESULT=${UNSET_VAR?}", 1, "required variable UNSET_VAR is missing a value"),
        (
            'A=1\nB="multi\nline ${C:?no C}"\n',
            2,
            "required variable C is missing a value: no C",
        ),
        (
            "A=1\nB=${\n",
            2,
            'invalid interpolation format for "${": you may need to escape any $ with another $',
        ),
    ],
)
def test_malformed_file_raises_with_line(text: str, line: int, message: str) -> None:
    with pytest.raises(DotenvError) as caught:
        parse_dotenv(text, lookup)
    assert caught.value.line == line
    assert caught.value.message == message
    assert str(caught.value) == f"line {line}: {message}"


def test_single_quoted_value_is_not_interpolated_or_looked_up() -> None:
    def refuse(name: str) -> str | None:
        raise AssertionError(f"looked up {name}")

    assert parse_dotenv("A='${B:?x} $C'\n", refuse) == {"A": "${B:?x} $C"}


def test_keys_keep_file_order() -> None:
    assert list(parse_dotenv("Z=1\nA=2\nM=3\n", nothing)) == ["Z", "A", "M"]
