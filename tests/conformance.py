"""The SDK conformance table: what each real SDK's calls keep, observed by the tests.

Tests that drive a real SDK through the collector call :func:`record` once per field
they check (``ok`` is whether the field arrived as the SDK sent it, in Kafka or in the
profile). Observations go to ``.crm-test/conformance/<sdk>.jsonl``; a pytest session
starts an SDK's file afresh the first time it records for that SDK, so several
sessions testing different SDKs can run side by side.

``python -m tests.conformance`` renders every SDK's file into ``docs/sdk-conformance.md``:
one table per call type, a row per field, a column per SDK; a cell is ✓ when every
observation of that field in the SDK's last run was ok, ✗ when one was not, and blank
when the SDK was not observed sending that field (its API has no such field).

Field names are shared between the SDK tests so rows line up; use the existing ones
where they fit: ``delivered``, ``messageId``, ``userId``, ``anonymousId``,
``timestamp``, ``originalTimestamp``, ``sentAt``, ``context.library``, ``context.app``,
``context (custom field)``, ``integrations``, ``channel``, ``traits.email``,
``traits.name``, ``traits (custom)``, ``context.traits``, ``event``, ``properties``,
``properties (nested)``, ``name``, ``category``, ``groupId``, ``previousId``, and for
the profile ``profile: ...``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.config import REPO_ROOT

DIR = Path(os.environ.get("CRM_CONFORMANCE_DIR", str(REPO_ROOT / ".crm-test" / "conformance")))
DOC = REPO_ROOT / "docs" / "sdk-conformance.md"
CALL_ORDER = ("identify", "track", "page", "screen", "group", "alias")
FIELD_ORDER = (
    "delivered",
    "type",
    "messageId",
    "userId",
    "anonymousId",
    "timestamp",
    "originalTimestamp",
    "sentAt",
    "channel",
    "context.library",
    "context.app",
    "context (custom field)",
    "integrations",
    "event",
    "name",
    "category",
    "groupId",
    "previousId",
    "properties",
    "properties (nested)",
    "traits",
    "traits.email",
    "traits.name",
    "traits (custom)",
    "context.traits",
    "context.traits.email",
    "context.traits.name",
    "context.traits (custom)",
)
# What the SDK names in the tests stand for (others are shown by name only).
PACKAGES = {
    "segment-node": "`@segment/analytics-node` (npm)",
    "rudder-node": "`@rudderstack/rudder-sdk-node` (npm)",
    "segment-go": "`github.com/segmentio/analytics-go/v3` (Go)",
    "segment-python": "`segment-analytics-python` (PyPI)",
    "rudder-python": "`rudder-sdk-python` (PyPI)",
    "analytics-next": "`@segment/analytics-next` (npm, in Chromium)",
    "analytics-next (batching)": "`@segment/analytics-next` with `deliveryStrategy: batching`",
    "rudder-js": "`@rudderstack/analytics-js` v3 (npm, in Chromium)",
    "rudder-js (batch)": "`@rudderstack/analytics-js` v3 with batching",
    "rudder-js (beacon)": "`@rudderstack/analytics-js` v3 with `useBeacon`",
    "crm.js": "our `/v1/crm.js` snippet (analytics-next bundled, in Chromium)",
}

_started: set[str] = set()


def _path(sdk: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in sdk)
    return DIR / f"{safe}.jsonl"


def record(sdk: str, call: str, field: str, ok: bool) -> None:
    """Persist one observation: ``sdk``'s ``call`` kept ``field`` (``ok``) or not."""
    path = _path(sdk)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = "a" if sdk in _started else "w"
    _started.add(sdk)
    line = {
        "sdk": sdk,
        "call": call,
        "field": field,
        "ok": bool(ok),
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    with path.open(mode, encoding="utf-8") as out:
        out.write(json.dumps(line, ensure_ascii=False) + "\n")


class Fields:
    """Field-by-field checks of one SDK call; each is recorded for the conformance table."""

    def __init__(self, sdk: str, call: str) -> None:
        self.sdk, self.call, self.failures = sdk, call, list[str]()

    def check(self, name: str, ok: bool, detail: object = "") -> None:
        record(self.sdk, self.call, name, ok)
        if not ok:
            self.failures.append(f"{self.call} {name}: {detail}")

    def eq(self, name: str, got: object, want: object) -> None:
        self.check(name, got == want, f"got {got!r}, want {want!r}")

    def subset(self, name: str, got: object, want: dict[str, Any]) -> None:
        ok = isinstance(got, dict) and all(got.get(k) == v for k, v in want.items())
        self.check(name, ok, f"got {got!r}, want at least {want!r}")

    def verdict(self) -> None:
        assert not self.failures, f"{self.sdk} {self.call}:\n  " + "\n  ".join(self.failures)


def load(directory: Path = DIR) -> list[dict[str, object]]:
    """Every observation of every SDK, in file then line order."""
    rows: list[dict[str, object]] = []
    for path in sorted(directory.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                rows.append(json.loads(line))
    return rows


def _ordered(values: Iterable[str], first: tuple[str, ...] = ()) -> list[str]:
    seen = list(dict.fromkeys(values))
    return [v for v in first if v in seen] + [v for v in seen if v not in first]


def _field_rows(fields: Iterable[str]) -> list[str]:
    """Known fields in FIELD_ORDER, then others as first seen, the profile's rows last."""
    ordered = _ordered(fields, FIELD_ORDER)
    return [f for f in ordered if not f.startswith("profile")] + [
        f for f in ordered if f.startswith("profile")
    ]


def render(rows: list[dict[str, object]]) -> str:
    """The Markdown document: a table per call type, fields x SDKs."""
    cells: dict[tuple[str, str, str], bool] = {}
    for r in rows:
        key = (str(r["call"]), str(r["field"]), str(r["sdk"]))
        cells[key] = cells.get(key, True) and bool(r["ok"])
    sdks = _ordered(str(r["sdk"]) for r in rows)
    calls = _ordered((str(r["call"]) for r in rows), CALL_ORDER)
    out = [
        "# SDK conformance",
        "",
        "Generated from the SDK integration tests, not written by hand: `make test` (or",
        "`pytest tests/integration/test_server_sdks.py` and the browser SDK tests) records",
        "what every real SDK sent through the collector, then `python -m tests.conformance`",
        "writes this file.",
        "",
        "✓: the field arrived as the SDK sent it (in Kafka, or its effect in the profile);",
        "✗: it was lost, changed or rejected; blank: this SDK does not send the field.",
        "",
        "SDKs: "
        + "; ".join(f"`{s}` = {PACKAGES[s]}" if s in PACKAGES else f"`{s}`" for s in sdks)
        + ".",
        "",
    ]
    for call in calls:
        fields = _field_rows(f for (c, f, _s) in cells if c == call)
        out += [f"## {call}", ""]
        out.append("| field | " + " | ".join(f"`{s}`" for s in sdks) + " |")
        out.append("| --- |" + " :-: |" * len(sdks))
        for field in fields:
            marks = []
            for sdk in sdks:
                ok = cells.get((call, field, sdk))
                marks.append("" if ok is None else ("✓" if ok else "✗"))
            out.append(f"| {field} | " + " | ".join(marks) + " |")
        out.append("")
    return "\n".join(out)


def main(argv: list[str]) -> int:
    rows = load()
    if not rows:
        print(f"no observations under {DIR}: run the SDK tests first", file=sys.stderr)
        return 1
    target = Path(argv[0]) if argv else DOC
    target.write_text(render(rows), encoding="utf-8")
    print(f"wrote {target} from {len(rows)} observations")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
