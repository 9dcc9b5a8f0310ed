"""Marketer conditions over a profile, shared by segments and personalization rules.

A condition is YAML a marketer can read::

    all:
      - {field: loyalty.tier, eq: gold}
      - {field: purchases.last_purchase, older_than: 60d}
      - any:
          - {field: scores.churn_risk, gte: 0.6}
          - not: {field: segments, contains: newsletter}

Leaves name a dotted path into the facts (the rendered profile, plus request
context for personalization) and exactly one operator. ``older_than`` and
``within`` are the time-relative operators: evaluating them also yields the
event time at which their answer will flip, which is what segment timers wait
for. Config errors name the file line (``ConfigError``) so a bad edit is easy
to find; whoever hot-reloads a file keeps serving the previous version.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import yaml

# --- YAML with line numbers ------------------------------------------------------


class ConfigError(ValueError):
    """A configuration file is invalid; the message names the file and line."""


class LineDict(dict[str, Any]):
    """A mapping that remembers the line of itself and of each key."""

    line: int = 0
    lines: dict[str, int]


class _Loader(yaml.SafeLoader):
    pass


def _mapping(loader: _Loader, node: yaml.MappingNode) -> LineDict:
    loader.flatten_mapping(node)
    out = LineDict()
    out.line = node.start_mark.line + 1
    out.lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in out:
            raise ConfigError(f"line {key_node.start_mark.line + 1}: duplicate key {key!r}")
        out[key] = loader.construct_object(value_node, deep=True)
        out.lines[key] = key_node.start_mark.line + 1
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def load_yaml(text: str, source: str = "<config>") -> LineDict:
    """Parse YAML into LineDicts; syntax errors become ConfigError with the line."""
    try:
        doc = yaml.load(text, Loader=_Loader)  # a SafeLoader subclass
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else 0
        raise ConfigError(f"{source}: line {line}: {exc.problem}") from None
    if doc is None:
        doc = LineDict()
        doc.line, doc.lines = 1, {}
    if not isinstance(doc, LineDict):
        raise ConfigError(f"{source}: line 1: the top level must be a mapping")
    return doc


def line_of(node: Any, key: str | None = None, default: int = 0) -> int:
    if isinstance(node, LineDict):
        return node.lines.get(key, node.line) if key is not None else node.line
    return default


def fail(
    source: str, node: Any, message: str, key: str | None = None, line: int = 0
) -> ConfigError:
    return ConfigError(f"{source}: line {line_of(node, key, line)}: {message}")


# --- durations and times ---------------------------------------------------------

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


def parse_duration(value: Any) -> int:
    """``"60d"``, ``"12h"``, ``"90m"``... in milliseconds."""
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(f"{value!r} is not a duration like 30m, 12h, 60d or 2w")
    return int(float(match.group(1)) * _UNIT_MS[match.group(2)])


class Instant(str):
    """An ISO timestamp that also carries its epoch milliseconds (no parsing back)."""

    ms: int

    def __new__(cls, ms: int) -> Instant:
        text = super().__new__(cls, datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat())
        text.ms = ms
        return text


def as_ms(value: Any) -> int | None:
    """Epoch milliseconds from the forms facts use (ISO strings, numbers)."""
    if type(value) is Instant:
        return value.ms
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return int(value)
    if isinstance(value, str):
        try:
            return int(datetime.fromisoformat(value).timestamp() * 1000)
        except ValueError:
            return None
    return None


# --- conditions ------------------------------------------------------------------

MISSING = object()


def lookup(facts: dict[str, Any], path: tuple[str, ...]) -> Any:
    resolve = getattr(facts, "resolve", None)
    if resolve is not None:  # facts that answer a path without building whole sections
        return resolve(path, MISSING)
    return walk(facts, path)


def walk(facts: Any, path: tuple[str, ...]) -> Any:
    cur: Any = facts
    for part in path:
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        else:
            return MISSING
    return cur


def _cmp(op: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def check(actual: Any, expected: Any) -> bool:
        if actual is MISSING or actual is None:
            return False
        try:
            return bool(op(actual, expected))
        except TypeError:
            return False

    return check


def _contains(actual: Any, expected: Any) -> bool:
    if isinstance(actual, dict | list | tuple | set | frozenset | str):
        return expected in actual
    return False


COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda a, b: a is not MISSING and a == b,
    "ne": lambda a, b: a is MISSING or a != b,
    "gt": _cmp(lambda a, b: a > b),
    "gte": _cmp(lambda a, b: a >= b),
    "lt": _cmp(lambda a, b: a < b),
    "lte": _cmp(lambda a, b: a <= b),
    "in": lambda a, b: a is not MISSING and a in b,
    "not_in": lambda a, b: a is MISSING or a not in b,
    "contains": _contains,
    "not_contains": lambda a, b: not _contains(a, b),
    "exists": lambda a, b: (a is not MISSING and a is not None) == bool(b),
}
TIME_OPS = ("older_than", "within")
OPERATORS = (*COMPARE, *TIME_OPS)


@dataclass
class Evaluation:
    """What evaluating conditions at ``now`` found out besides the answer."""

    now: int
    next_change: int | None = None  # earliest event time a time-relative leaf flips

    def flips_at(self, t: int) -> None:
        if t > self.now and (self.next_change is None or t < self.next_change):
            self.next_change = t


@dataclass(frozen=True)
class Leaf:
    path: tuple[str, ...]
    op: str
    value: Any

    def __call__(self, facts: dict[str, Any], ev: Evaluation) -> bool:
        actual = lookup(facts, self.path)
        if self.op in TIME_OPS:
            t = as_ms(actual)
            if t is None:
                return False
            edge = t + self.value
            ev.flips_at(edge)
            return ev.now >= edge if self.op == "older_than" else ev.now < edge
        return COMPARE[self.op](actual, self.value)


@dataclass(frozen=True)
class Group:
    kind: str  # all | any | not
    parts: tuple[Condition, ...] = field(default_factory=tuple)

    def __call__(self, facts: dict[str, Any], ev: Evaluation) -> bool:
        # No short-circuit: every time-relative leaf must report when it flips.
        results = [part(facts, ev) for part in self.parts]
        if self.kind == "all":
            return all(results)
        if self.kind == "any":
            return any(results)
        return not results[0]


Condition = Leaf | Group


def parse_condition(node: Any, source: str, line: int = 0) -> Condition:
    """Build a condition from its YAML form, or raise ConfigError naming the line."""
    if not isinstance(node, LineDict):
        raise fail(source, node, f"a condition must be a mapping, got {node!r}", line=line)
    for kind in ("all", "any"):
        if kind in node:
            if len(node) != 1:
                raise fail(source, node, f"'{kind}' cannot be combined with other keys")
            items = node[kind]
            if not isinstance(items, list) or not items:
                raise fail(source, node, f"'{kind}' needs a non-empty list of conditions", kind)
            return Group(
                kind, tuple(parse_condition(i, source, line_of(node, kind)) for i in items)
            )
    if "not" in node:
        if len(node) != 1:
            raise fail(source, node, "'not' cannot be combined with other keys")
        return Group("not", (parse_condition(node["not"], source, line_of(node, "not")),))
    if "field" not in node:
        raise fail(source, node, "a condition needs 'field' (or all/any/not)")
    path = node["field"]
    if not isinstance(path, str) or not path or any(not p for p in path.split(".")):
        raise fail(source, node, f"'field' must be a dotted path, got {path!r}", "field")
    ops = [k for k in node if k != "field"]
    unknown = [k for k in ops if k not in OPERATORS]
    if unknown:
        raise fail(
            source,
            node,
            f"unknown operator {unknown[0]!r}; one of {', '.join(OPERATORS)}",
            unknown[0],
        )
    if len(ops) != 1:
        raise fail(source, node, f"field {path!r} needs exactly one operator, got {len(ops)}")
    op = ops[0]
    value = node[op]
    if op in TIME_OPS:
        try:
            value = parse_duration(value)
        except ValueError as exc:
            raise fail(source, node, str(exc), op) from None
    elif op in ("in", "not_in") and not isinstance(value, list):
        raise fail(source, node, f"'{op}' needs a list", op)
    return Leaf(tuple(path.split(".")), op, value)


def holds(condition: Condition, facts: dict[str, Any], now: int) -> bool:
    return condition(facts, Evaluation(now))
