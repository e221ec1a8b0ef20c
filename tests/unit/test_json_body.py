"""The request body's JSON parser: what json.loads lets through and the API refuses."""

from __future__ import annotations

import json

import pytest

from lambdas.predict.json_body import BodyError, parse


def refusal(text: str) -> tuple[str, str]:
    with pytest.raises(BodyError) as caught:
        parse(text)
    return caught.value.path, caught.value.kind


def test_a_well_formed_body_parses_as_json_loads_does() -> None:
    text = '{"encounters": [{"a": 1, "b": [1.5, null, true, "x"]}], "n": -0}'
    assert parse(text) == json.loads(text)


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ('{"a": 1, "a": 1}', "$.a"),
        ('{"e": [{"x": 1}, {"y": {"z": 1, "z": 2}}]}', "$.e[1].y.z"),
        ('{"e": [1, {"ok": 1}, {"k": 1, "k": 2}], "e2": {"q": 1, "q": 2}}', "$.e[2].k"),  # the first one
        ('{"not a name": 1, "not a name": 2}', "$.<key>"),
        ('{"a": {"b": 1, "b": 2}, "a": 3}', "$.a"),  # the outer object comes first
    ],
)
def test_a_repeated_key_is_refused_with_the_path_of_its_first_repeat(text: str, path: str) -> None:
    assert refusal(text) == (path, "duplicate_key")


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_not_json(constant: str) -> None:
    assert refusal(f'{{"a": {constant}}}') == ("$", "json_invalid")


def test_an_integer_too_long_to_read_is_refused() -> None:
    assert refusal('{"a": ' + "9" * 5000 + "}") == ("$", "json_invalid")


def test_nesting_beyond_the_parser_is_refused() -> None:
    assert refusal("[" * 100_000 + "]" * 100_000) == ("$", "json_too_deep")


def test_a_syntax_error_stays_a_json_decode_error() -> None:
    with pytest.raises(json.JSONDecodeError):
        parse('{"a": ')
