"""Real server SDKs through the collector: every call type, every field of the Segment spec.

Segment's analytics-node, RudderStack's rudder-sdk-node (npm), Segment's analytics-go
(Go module proxy), Segment's analytics-python and RudderStack's rudder-sdk-python are
each driven through their public API, as an application would, against one collector,
worker and lookup API (started once for the module: a pipeline per SDK would cost
minutes). Every SDK makes the same six calls (identify, track, page, screen, group,
alias) with messageId, timestamp, context (library, app, locale, a custom field),
integrations, anonymousId and userId; the tests then check field by field what reached
Kafka and what the profile made of it, and record each observation for the conformance
table (``tests/conformance.py``, ``docs/sdk-conformance.md``).

What each SDK puts on the wire was read from its own code, not guessed:

* analytics-node: one ``/v1/batch`` with ``writeKey`` and ``sentAt``; page
  ``category`` is also copied into ``properties.category``; ``_metadata`` top level.
* rudder-sdk-node: gzip; ``originalTimestamp`` (never ``timestamp``) stamped per call;
  identify traits at the top and copied into ``context.traits``; ``channel: "server"``;
  ``_metadata``; the first call of a client is flushed alone.
* analytics-go: ``context.library`` only in the batch-level ``context``; no page or
  screen ``category`` in its API; retries every failure until closed.
* analytics-python: per message ``context.library``; ``timestamp`` with milliseconds.
* rudder-sdk-python: identify traits only in ``context.traits`` (none at the top);
  ``channel: "server"``; parses error bodies as ``{"code", "message"}``.

The Node and Go programs live in ``tests/sdk/`` (installed by ``infra/sdk-deps.sh``,
which ``make test-deps`` runs); the Python SDKs are dev dependencies.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import httpx
import msgspec
import pytest
from rudderstack.analytics.client import Client as RudderClient
from segment.analytics.client import Client as SegmentClient

from pipeline.config import REPO_ROOT, Settings
from pipeline.kafka.inspect import read_range
from pipeline.kafka.topics import ensure_topics
from tests.conformance import Fields
from tests.integration.conftest import running_pipeline, wait_for

WRITE_KEY = "it-write-key"
READ = {"Authorization": "Bearer it-read-key"}
SDK_DIR = REPO_ROOT / "tests" / "sdk"
NODE_SCRIPT = SDK_DIR / "node" / "send.mjs"
GO_BINARY = SDK_DIR / "go" / "sdk-go"
NODE_MODULES = SDK_DIR / "node" / "node_modules"
DUMP = REPO_ROOT / ".crm-test" / "server-sdks" / "last-run.json"
CALLS = ("identify", "track", "page", "screen", "group", "alias")
RUN = uuid.uuid4().hex[:8]

Report = dict[str, Any]  # {"results": [{"messageId", "ok", "error"}], "errors": [...]}


# --- the SDKs --------------------------------------------------------------------


def _subprocess_sdk(command: list[str], spec: dict[str, Any], needs: Path) -> Report:
    if not needs.exists():
        pytest.fail(f"{needs} is missing: run `make test-deps` (infra/sdk-deps.sh)")
    done = subprocess.run(
        command, input=json.dumps(spec), capture_output=True, text=True, timeout=90, check=False
    )
    assert done.returncode == 0, f"{command} exited {done.returncode}: {done.stderr[-2000:]}"
    report: Report = json.loads(done.stdout.strip().splitlines()[-1])
    report["stderr"] = done.stderr[-2000:]
    return report


def _node(sdk: str) -> Callable[[dict[str, Any]], Report]:
    node = shutil.which("node") or "node"
    return lambda spec: _subprocess_sdk([node, str(NODE_SCRIPT), sdk], spec, NODE_MODULES)


def _go(spec: dict[str, Any]) -> Report:
    return _subprocess_sdk([str(GO_BINARY)], spec, GO_BINARY)


def _python(client_class: Any) -> Callable[[dict[str, Any]], Report]:
    """A Segment-style Python client (both SDKs share the API) in its default async mode."""

    def run(spec: dict[str, Any]) -> Report:
        failed: dict[str, str] = {}

        def on_error(exc: Exception, batch: list[dict[str, Any]]) -> None:
            for msg in batch:
                failed[str(msg.get("messageId"))] = f"{type(exc).__name__}: {exc}"

        client = client_class(
            spec["writeKey"],
            host=spec["host"],
            on_error=on_error,
            max_retries=3,  # a busy broker can make the collector answer 503 once
            upload_interval=0.1,
        )
        for call in spec["calls"]:
            c = copy.deepcopy(call)  # the SDKs write library and traits into context
            common = {
                "context": c.get("context"),
                "integrations": c.get("integrations"),
                "message_id": c["messageId"],
                "timestamp": datetime.fromisoformat(c["timestamp"]),
            }
            who = {"user_id": c.get("userId"), "anonymous_id": c.get("anonymousId")}
            kind = c["type"]
            if kind == "identify":
                client.identify(traits=c["traits"], **who, **common)
            elif kind == "track":
                client.track(event=c["event"], properties=c["properties"], **who, **common)
            elif kind in ("page", "screen"):
                getattr(client, kind)(
                    name=c["name"],
                    category=c.get("category"),
                    properties=c["properties"],
                    **who,
                    **common,
                )
            elif kind == "group":
                client.group(group_id=c["groupId"], traits=c["traits"], **who, **common)
            elif kind == "alias":
                client.alias(previous_id=c["previousId"], user_id=c["userId"], **common)
        client.flush()
        client.join()
        results = [
            {
                "messageId": c["messageId"],
                "ok": c["messageId"] not in failed,
                "error": failed.get(c["messageId"]),
            }
            for c in spec["calls"]
        ]
        return {"results": results, "errors": sorted(set(failed.values()))}

    return run


@dataclass(frozen=True)
class Sdk:
    name: str
    library: str  # context.library.name it stamps
    run: Callable[[dict[str, Any]], Report]
    time_field: str = "timestamp"  # how it sends the event's time
    identify_traits: tuple[str, ...] = ("traits",)  # where identify traits go on the wire
    channel: bool = False  # sends channel: "server"
    metadata: bool = False  # sends a top-level _metadata
    lacks: frozenset[tuple[str, str]] = frozenset()  # (call, field) its API cannot send


SDKS: dict[str, Sdk] = {
    s.name: s
    for s in (
        Sdk("segment-node", "@segment/analytics-node", _node("segment"), metadata=True),
        Sdk(
            "rudder-node",
            "analytics-node",
            _node("rudderstack"),
            time_field="originalTimestamp",
            identify_traits=("traits", "context.traits"),
            channel=True,
            metadata=True,
            lacks=frozenset({("screen", "category")}),  # not in its ScreenParams
        ),
        Sdk(
            "segment-go",
            "analytics-go",
            _go,
            lacks=frozenset({("page", "category"), ("screen", "category")}),
        ),
        Sdk("segment-python", "analytics-python", _python(SegmentClient)),
        Sdk(
            "rudder-python",
            "analytics-python",
            _python(RudderClient),
            identify_traits=("context.traits",),
            channel=True,
        ),
    )
}


# --- the calls every SDK makes ---------------------------------------------------


@dataclass
class Ids:
    sdk: str

    def __post_init__(self) -> None:
        tag = f"{self.sdk}-{RUN}"
        self.user, self.anon, self.previous = f"u-{tag}", f"a-{tag}", f"old-{tag}"
        self.group, self.email = f"acct-{tag}", f"Ada.{self.sdk}.{RUN}@Example.com"

    def message_id(self, call: str) -> str:
        return f"mid-{call}-{self.sdk}-{RUN}"


CONTEXT_APP = {"name": "crm-conformance", "version": "1.2.3"}
INTEGRATIONS = {"All": False, "Mixpanel": True}
IDENTIFY_TRAITS = {"name": "Ada Lovelace", "plan": "pro"}  # + email
CONTEXT_TRAITS = {"favourite_colour": "teal"}  # sent in track's context.traits
TRACK_PROPS = {"order_id": "o-1", "revenue": 42.5, "currency": "EUR"}
TRACK_NESTED = {
    "products": [{"sku": "SKU-1", "price": 42.5, "quantity": 1, "tags": ["a", "b"]}],
    "shipping": {"city": "Vilnius", "express": True},
}
PAGE: dict[str, Any] = {
    "name": "Pricing",
    "category": "Docs",
    "properties": {"path": "/pricing", "title": "P"},
}
SCREEN: dict[str, Any] = {"name": "Checkout", "category": "Shop", "properties": {"step": 2}}
SCREEN_NESTED = {"variant": {"layout": "compact", "dark": False}}
GROUP_TRAITS = {"name": "Acme Inc", "plan": "enterprise", "employees": 120}


def calls_for(sdk: Sdk, start: datetime) -> list[dict[str, Any]]:
    """The six calls, SDK-neutral (the drivers map them onto each SDK's API)."""
    ids = Ids(sdk.name)
    out: list[dict[str, Any]] = []
    for i, kind in enumerate(CALLS):
        call: dict[str, Any] = {
            "type": kind,
            "messageId": ids.message_id(kind),
            "userId": ids.user,
            "anonymousId": ids.anon,
            "timestamp": (start + timedelta(seconds=i)).isoformat(timespec="milliseconds"),
            "context": {
                "app": CONTEXT_APP,
                "locale": "lt-LT",
                "crm_test": {"sdk": sdk.name, "run": RUN},
            },
            "integrations": INTEGRATIONS,
        }
        if kind == "identify":
            call["traits"] = {"email": ids.email, **IDENTIFY_TRAITS}
        elif kind == "track":
            call["event"] = "Order Completed"
            call["properties"] = {**TRACK_PROPS, **TRACK_NESTED}
            call["context"]["traits"] = CONTEXT_TRAITS
        elif kind == "page":
            del call["userId"]  # an anonymous page view, joined to the user by identify
            call.update(copy.deepcopy(PAGE))
        elif kind == "screen":
            call.update(copy.deepcopy(SCREEN))
            call["properties"].update(SCREEN_NESTED)
        elif kind == "group":
            call["groupId"], call["traits"] = ids.group, GROUP_TRAITS
        elif kind == "alias":
            del call["anonymousId"]  # alias(userId, previousId) in every SDK's API
            call["previousId"] = ids.previous
        for call_kind, fld in sdk.lacks:
            if call_kind == kind:
                call.pop(fld, None)
        out.append(call)
    return out


# --- one pipeline, every SDK -----------------------------------------------------


@dataclass
class Run:
    settings: Settings
    collector: str
    api: str
    sent: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    reports: dict[str, Report] = field(default_factory=dict)
    events: dict[str, dict[str, Any]] = field(default_factory=dict)  # by messageId
    dead: dict[str, str] = field(default_factory=dict)  # messageId -> DLQ reason
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)  # by sdk

    def profile_by(self, kind: str, value: str) -> httpx.Response:
        return httpx.get(f"{self.api}/v1/profiles/by/{kind}/{value}", headers=READ, timeout=10)


def _read_kafka(run: Run) -> None:
    for m in read_range(run.settings, run.settings.topic("events")):
        event = msgspec.json.decode(m.value() or b"{}")
        run.events[str(event.get("messageId"))] = event
    for m in read_range(run.settings, run.settings.topic("events.dlq")):
        raw = bytes(m.value() or b"")
        pairs = cast(list[tuple[str, bytes | None]], m.headers() or [])
        headers = {k: (v or b"").decode(errors="replace") for k, v in pairs}
        for calls in run.sent.values():
            for call in calls:
                if call["messageId"].encode() in raw:
                    run.dead[call["messageId"]] = json.dumps(headers)


def _settle_profiles(run: Run) -> None:
    """Wait until each SDK's user profile has folded every event of that SDK in Kafka."""
    expected = {
        sdk: sum(1 for c in calls if c["messageId"] in run.events)
        for sdk, calls in run.sent.items()
    }

    def fetch() -> dict[str, dict[str, Any]]:
        got = {}
        for sdk in run.sent:
            r = run.profile_by("user_id", Ids(sdk).user)
            if r.status_code == 200:
                got[sdk] = r.json()
        return got

    def settled(got: dict[str, dict[str, Any]]) -> bool:
        return all(got.get(s, {}).get("events") == n for s, n in expected.items())

    try:
        run.profiles = wait_for(fetch, settled, timeout=60, what="profiles")
    except AssertionError:
        run.profiles = fetch()  # the tests show what is missing, field by field


@pytest.fixture(scope="module")
def run(services: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    settings = Settings(topic_prefix=f"it{uuid.uuid4().hex[:8]}.", topic_partitions=3)
    ensure_topics(settings)
    with running_pipeline(settings, tmp_path_factory.mktemp("server-sdks")) as stack:
        r = Run(settings, stack["collector"], stack["api"])
        start = (datetime.now(UTC) - timedelta(minutes=10)).replace(microsecond=0)
        r.sent = {name: calls_for(sdk, start) for name, sdk in SDKS.items()}
        with ThreadPoolExecutor(len(SDKS)) as pool:
            futures = {
                name: pool.submit(
                    sdk.run, {"host": r.collector, "writeKey": WRITE_KEY, "calls": r.sent[name]}
                )
                for name, sdk in SDKS.items()
            }
            r.reports = {name: f.result() for name, f in futures.items()}
        # The collector answers only after Kafka acknowledged: what was accepted is there.
        _read_kafka(r)
        _settle_profiles(r)
        _dump(r)
        yield r


def _dump(run: Run) -> None:
    """What was sent, reported, stored and folded, for reading a failure after the fact."""
    DUMP.parent.mkdir(parents=True, exist_ok=True)
    mine = {c["messageId"] for calls in run.sent.values() for c in calls}
    state = {
        "sent": run.sent,
        "reports": run.reports,
        "events": {k: v for k, v in run.events.items() if k in mine},
        "dead": run.dead,
        "profiles": run.profiles,
    }
    DUMP.write_text(json.dumps(state, indent=1, default=str), encoding="utf-8")


# --- checks ----------------------------------------------------------------------


def _time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _dig(obj: Any, path: str) -> Any:
    for part in path.split("."):
        obj = obj.get(part) if isinstance(obj, dict) else None
    return obj


def _email_lower(sdk: str) -> str:
    return Ids(sdk).email.lower()


def _is_hash(value: object) -> bool:
    return (
        isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)
    )


# Cases that fail only because of a gap named in issue 13 that is not fixed yet. Strict:
# a case that starts passing fails until its mark is removed here.
GAPS: dict[tuple[str, str, str], str] = {}


def _cases(aspect: str) -> list[Any]:
    return [
        pytest.param(
            sdk,
            call,
            id=f"{sdk}-{call}",
            marks=[pytest.mark.xfail(strict=True, reason=GAPS[(sdk, call, aspect)])]
            if (sdk, call, aspect) in GAPS
            else [],
        )
        for sdk in SDKS
        for call in CALLS
    ]


def _sent(run: Run, sdk: str, call: str) -> dict[str, Any]:
    return next(c for c in run.sent[sdk] if c["type"] == call)


def _result(run: Run, sdk: str, message_id: str) -> dict[str, Any]:
    results = run.reports[sdk].get("results", [])
    return next((r for r in results if r["messageId"] == message_id), {"ok": False})


@pytest.mark.parametrize(("sdk", "call"), _cases("kafka"))
def test_call_reaches_kafka_field_by_field(run: Run, sdk: str, call: str) -> None:
    info, sent = SDKS[sdk], _sent(run, sdk, call)
    mid = sent["messageId"]
    f = Fields(sdk, call)
    reported, event = _result(run, sdk, mid), run.events.get(mid)
    f.check(
        "delivered",
        bool(reported.get("ok")) and event is not None,
        f"SDK reported {reported}, SDK errors {run.reports[sdk].get('errors')}, "
        f"in Kafka: {event is not None}, dead-lettered: {run.dead.get(mid)}",
    )
    if event is None:
        f.verdict()
        return
    f.eq("type", event.get("type"), call)
    f.eq("messageId", event.get("messageId"), mid)
    if "userId" in sent:
        f.check(
            "userId",
            event.get("userId") == sent["userId"]
            and event.get("identities", {}).get("user_id") == sent["userId"],
            f"userId {event.get('userId')!r}, identities {event.get('identities')}",
        )
    if "anonymousId" in sent:
        f.check(
            "anonymousId",
            event.get("anonymousId") == sent["anonymousId"]
            and event.get("identities", {}).get("anonymous_id") == sent["anonymousId"],
            f"anonymousId {event.get('anonymousId')!r}, identities {event.get('identities')}",
        )
    # Event time: what the SDK said, moved by the gap between its sentAt and our receipt
    # (Segment's clock-skew rule); the SDK's own time kept as originalTimestamp.
    when = _time(sent["timestamp"])
    sent_at, received_at = _time(event.get("sentAt")), _time(event.get("receivedAt"))
    f.check("sentAt", sent_at is not None, f"sentAt {event.get('sentAt')!r}")
    got_time, kept = _time(event.get("timestamp")), _time(event.get("originalTimestamp"))
    want_time = when + (received_at - sent_at) if when and sent_at and received_at else when
    time_ok = (
        got_time is not None
        and want_time is not None
        and abs(got_time - want_time) <= timedelta(milliseconds=2)
    )
    time_detail = (
        f"timestamp {event.get('timestamp')!r}, want {want_time}; originalTimestamp "
        f"{event.get('originalTimestamp')!r} (sent {info.time_field} {sent['timestamp']}, "
        f"sentAt {event.get('sentAt')}, receivedAt {event.get('receivedAt')})"
    )
    if info.time_field == "timestamp":
        f.check("timestamp", time_ok, time_detail)
        # the client's own clock reading is kept next to the corrected time
        f.check("originalTimestamp", kept == when, time_detail)
    else:  # only originalTimestamp sent: it is the event time, and is kept as sent
        f.check("originalTimestamp", time_ok and kept == when, time_detail)
    context = event.get("context") or {}
    f.eq("context.library", _dig(context, "library.name"), info.library)
    f.eq("context.app", context.get("app"), CONTEXT_APP)
    f.check(
        "context (custom field)",
        context.get("crm_test") == {"sdk": sdk, "run": RUN} and context.get("locale") == "lt-LT",
        f"crm_test {context.get('crm_test')!r}, locale {context.get('locale')!r}",
    )
    f.subset("integrations", event.get("integrations"), INTEGRATIONS)
    if info.channel:
        f.eq("channel", event.get("channel"), "server")
    if info.metadata:
        f.check("_metadata (unknown top-level field)", "_metadata" in event, sorted(event))

    if call == "identify":
        traits_sent = sent["traits"]
        for where in info.identify_traits:
            traits = _dig(event, where) or {}
            email = traits.get("email")
            label = "traits" if where == "traits" else "context.traits"
            f.check(
                f"{label}.email",
                _is_hash(email) and event.get("identities", {}).get("email") == email,
                f"email {email!r} (hashed?), identities {event.get('identities')}",
            )
            f.eq(f"{label}.name", traits.get("name"), traits_sent["name"])
            f.eq(f"{label} (custom)", traits.get("plan"), traits_sent["plan"])
        raw = json.dumps(event).lower()
        f.check(
            "no raw email anywhere in the record",
            _email_lower(sdk) not in raw,
            "the identify's email reached Kafka unhashed",
        )
    elif call == "track":
        f.eq("event", event.get("event"), sent["event"])
        props = event.get("properties") or {}
        f.subset("properties", props, TRACK_PROPS)
        f.subset("properties (nested)", props, TRACK_NESTED)
        f.eq("context.traits", context.get("traits"), CONTEXT_TRAITS)
    elif call in ("page", "screen"):
        f.eq("name", event.get("name"), sent["name"])
        if "category" in sent:
            f.eq("category", event.get("category"), sent["category"])
        props = event.get("properties") or {}
        base = PAGE["properties"] if call == "page" else SCREEN["properties"]
        f.subset("properties", props, base)
        if call == "screen":
            f.subset("properties (nested)", props, SCREEN_NESTED)
    elif call == "group":
        f.eq("groupId", event.get("groupId"), sent["groupId"])
        f.eq("traits", event.get("traits"), GROUP_TRAITS)
    elif call == "alias":
        f.eq("previousId", event.get("previousId"), sent["previousId"])
    f.verdict()


@pytest.mark.parametrize(("sdk", "call"), _cases("profile"))
def test_call_reaches_the_profile(run: Run, sdk: str, call: str) -> None:
    ids, f = Ids(sdk), Fields(sdk, call)
    profile = run.profiles.get(sdk)
    f.check("profile: found by userId", profile is not None, f"no profile for {ids.user}")
    if profile is None:
        f.verdict()
        return
    customer = profile["customer_id"]
    identifiers = profile.get("identifiers") or {}
    traits = profile.get("traits") or {}

    def joins(kind: str, value: str) -> tuple[bool, str]:
        r = run.profile_by(kind, value)
        got = r.json().get("customer_id") if r.status_code == 200 else None
        return got == customer, f"{kind} {value} -> {r.status_code} {got}, user is {customer}"

    if call == "identify":
        hashed = _dig(run.events.get(ids.message_id("identify")), "identities.email")
        f.subset("profile: traits", traits, IDENTIFY_TRAITS)
        f.check(
            "profile: traits.email",
            _is_hash(traits.get("email")) and traits.get("email") == hashed,
            f"trait {traits.get('email')!r}, identify's hash {hashed!r}",
        )
        f.check(
            "profile: userId + anonymousId + email",
            ids.user in identifiers.get("user_id", [])
            and ids.anon in identifiers.get("anonymous_id", [])
            and bool(identifiers.get("email")),
            identifiers,
        )
    elif call == "track":
        f.subset("profile: context.traits", traits, CONTEXT_TRAITS)
        purchases = profile.get("purchases") or {}
        f.check(
            "profile: order (properties)",
            purchases.get("orders") == 1 and purchases.get("revenue") == 42.5,
            purchases,
        )
    elif call == "page":
        ok, detail = joins("anonymous_id", ids.anon)
        f.check("profile: anonymous page joins the user", ok, detail)
        web = profile.get("web") or {}
        f.check("profile: page view", (web.get("page_views") or 0) >= 1, web)
    elif call == "screen":
        app = (profile.get("channels") or {}).get("app") or {}
        f.eq("profile: screen view (app channel)", app.get("events"), 1)
    elif call == "group":
        groups = profile.get("groups") or {}
        f.eq("profile: groups", groups.get(ids.group), GROUP_TRAITS)
    elif call == "alias":
        ok, detail = joins("anonymous_id", ids.previous)
        f.check("profile: previousId joins the user", ok, detail)
    f.verdict()


@pytest.mark.parametrize(
    "sdk",
    [
        pytest.param(
            s,
            marks=[pytest.mark.xfail(strict=True, reason=GAPS[(s, "errors", "errors")])]
            if (s, "errors", "errors") in GAPS
            else [],
        )
        for s in SDKS
    ],
)
def test_sdk_reports_a_rejected_write_key(run: Run, sdk: str) -> None:
    """A refused request reaches the application as the SDK's own failure, with the status."""
    call = {**calls_for(SDKS[sdk], datetime.now(UTC))[1], "messageId": f"bad-key-{sdk}-{RUN}"}
    # waitSeconds: analytics-go retries even a 401 until closed; close at once instead.
    spec = {"host": run.collector, "writeKey": "not-a-key", "calls": [call], "waitSeconds": 0}
    report = SDKS[sdk].run(spec)
    result = report["results"][0]
    f = Fields(sdk, "errors")
    f.check(
        "bad write key reported as failure (401)",
        not result["ok"] and "401" in str(result.get("error")),
        f"{result}, SDK errors {report.get('errors')}",
    )
    f.verdict()
