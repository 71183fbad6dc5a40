"""``FIELD=VALUE`` settings on a dataclass plan, as the demo's and the benches' ``--set`` take them.

One parser for every ``--set``: a value is read as the type of the field it replaces, so that
``ceiling=false`` is False (``bool("false")`` would be True) and ``stage1_iters=3000`` is an int.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import TypeVar

Plan = TypeVar("Plan")

TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


def parse_value(text: str, like: object, name: str = "value") -> object:
    """``text`` as the type of ``like`` (bool, int, float, str, or a tuple of those)."""
    if isinstance(like, bool):
        word = text.strip().lower()
        if word not in TRUE_WORDS + FALSE_WORDS:
            raise ValueError(f"{name}: {text!r} is not a yes/no value (true/false, 1/0, yes/no, on/off)")
        return word in TRUE_WORDS
    if isinstance(like, tuple):
        items = [t for t in text.strip("()[] ").split(",") if t.strip()]
        return tuple(parse_value(t.strip(), like[0] if like else "", name) for t in items)
    try:
        return type(like)(text)
    except ValueError:
        raise ValueError(f"{name}: {text!r} is not a valid {type(like).__name__}") from None


def with_settings(plan: Plan, items: Iterable[str]) -> Plan:
    """A copy of the dataclass ``plan`` with each ``FIELD=VALUE`` of ``items`` applied.

    Raises ValueError naming the field for an unknown field, a missing ``=`` or a value of the
    wrong type."""
    fields = {f.name for f in dataclasses.fields(plan)}
    changes = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set {item!r}: expected FIELD=VALUE")
        if key not in fields:
            raise ValueError(f"--set: unknown field {key!r}; fields: {', '.join(sorted(fields))}")
        changes[key] = parse_value(value, getattr(plan, key), key)
    return dataclasses.replace(plan, **changes)


__all__ = ["parse_value", "with_settings"]
