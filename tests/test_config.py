"""Settings an operator gets wrong are refused at start, in one line that names the variable and
the values it takes; every setting is in the README's table."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest

from liveblog.config import BOUNDS, Settings

README = Path(__file__).resolve().parent.parent / "README.md"
NUMERIC = [field.name for field in fields(Settings) if type(field.default) in (int, float)]


def _refusal(environ: dict[str, str]) -> str:
    with pytest.raises(SystemExit) as refused:
        Settings.from_env(environ)
    return str(refused.value)


def test_every_numeric_setting_has_a_range_its_default_is_in():
    # The CLI checks --workers against the machine's CPUs.
    assert sorted(BOUNDS) == sorted(name for name in NUMERIC if name != "workers")
    defaults = Settings()
    for name, bound in BOUNDS.items():
        assert bound.holds(getattr(defaults, name)), name


def _outside(name: str) -> list[str]:
    bound = BOUNDS[name]
    kind = type(getattr(Settings(), name))
    below = bound.low if bound.above else bound.low - (1 if kind is int else 0.001)
    values = [below, bound.high + (1 if kind is int else 0.5)]
    return [str(kind(value)) for value in values] + (["nan"] if kind is float else [])


@pytest.mark.parametrize(("name", "raw"), [(name, raw) for name in sorted(BOUNDS) for raw in _outside(name)])
def test_a_value_out_of_range_is_refused_naming_the_variable_and_its_range(name: str, raw: str):
    variable = f"LIVEBLOG_{name.upper()}"
    message = _refusal({variable: raw})
    assert message.startswith(variable)
    assert str(BOUNDS[name]) in message


@pytest.mark.parametrize("name", sorted(BOUNDS))
def test_the_ends_of_a_range_are_taken(name: str):
    bound = BOUNDS[name]
    kind = type(getattr(Settings(), name))
    ends = [bound.high] if bound.above else [bound.low, bound.high]
    shortest_retry = {"LIVEBLOG_WEBHOOK_RETRY_BASE_MS": "10"}  # the longest retry may be as short
    for end in ends:
        environ = shortest_retry | {f"LIVEBLOG_{name.upper()}": str(kind(end))}
        assert getattr(Settings.from_env(environ), name) == end


def test_a_first_webhook_retry_longer_than_the_longest_is_refused():
    message = _refusal({"LIVEBLOG_WEBHOOK_RETRY_BASE_MS": "5000", "LIVEBLOG_WEBHOOK_RETRY_MAX_MS": "500"})
    assert "LIVEBLOG_WEBHOOK_RETRY_BASE_MS" in message and "LIVEBLOG_WEBHOOK_RETRY_MAX_MS" in message


def test_every_setting_is_in_the_readmes_configuration_table():
    listed = set(re.findall(r"^\| `LIVEBLOG_([A-Z_]+)` \|", README.read_text(), re.MULTILINE))
    assert {field.name.upper() for field in fields(Settings)} <= listed
