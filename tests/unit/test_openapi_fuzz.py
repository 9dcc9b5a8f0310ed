"""Schemathesis against the collector's and the profile API's own OpenAPI documents.

Both apps are called in process (ASGI): the collector with a ListProducer, the API with
an in-memory stand-in for the few Redis calls it makes (``FakeRedis`` below) and a
ListProducer. Every operation gets schema-valid and schema-violating requests (a
bounded, derandomized number per operation, so CI sees the same cases every run) and
every answer is checked: never a 5xx, only documented status codes, bodies and content
types as documented, valid requests accepted, invalid ones rejected with a 4xx.

What the checks cannot know is configured here, each with its reason:

* event times: generated within the configured window around receipt (the document
  states the window in words; a JSON Schema cannot express "now minus N days");
* 413 counts as a correct answer to a valid request (the byte limits are not a schema
  property) and as a rejection of an invalid one;
* GET routes ignore query parameters they do not name (SDKs add cache busters and their
  version), so extra query parameters are not generated as "invalid".
"""

from __future__ import annotations

import base64
import collections
import re
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from pipeline.api.app import create_app as create_api
from pipeline.config import Settings
from pipeline.sources.collector.app import create_app as create_collector
from pipeline.testing import ListProducer
from pipeline.wire.keys import RedisKeys
from tests.unit.api_fakes import FakeRedis

MAX_EXAMPLES = 25
KEY = "fuzz-key"
NOW = datetime.now(UTC)
CASES: collections.Counter[tuple[str, str, int]] = collections.Counter()

# Event times a client could send: within the window the fuzzed collector accepts, after
# clock-skew correction (timestamp + receivedAt - sentAt) too.
schemathesis.openapi.format(
    "date-time",
    st.datetimes(
        min_value=(NOW - timedelta(days=10)).replace(tzinfo=None),
        max_value=(NOW + timedelta(minutes=10)).replace(tzinfo=None),
        timezones=st.just(UTC),
    ).map(lambda d: d.isoformat().replace("+00:00", "Z")),
)


def _configure(schema: Any, authorization: str, phases: list[str] | None = None) -> None:
    schema.config.update(continue_on_failure=True, headers={"Authorization": authorization})
    schema.config.generation.update(
        max_examples=MAX_EXAMPLES,
        deterministic=True,
        database="none",
        modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
        allow_extra_parameters=False,
    )
    if phases is not None:
        schema.config.phases.update(phases=phases)
    checks = schema.config.checks
    checks.update(
        included_check_names=[
            "not_a_server_error",
            "status_code_conformance",
            "content_type_conformance",
            "response_schema_conformance",
            "positive_data_acceptance",
            "negative_data_rejection",
        ]
    )
    checks.positive_data_acceptance.expected_statuses = ["2XX", "304", "401", "404", "413"]
    checks.negative_data_rejection.expected_statuses = ["400", "401", "404", "405", "413"]


# --- the collector ---------------------------------------------------------------------

_snippet = Path(tempfile.mkdtemp(prefix="crm-fuzz-")) / "crm.js"
_snippet.write_text("/* snippet */")
COLLECTOR_SETTINGS = Settings(
    write_keys=KEY,
    topic_prefix="fuzz.",
    snippet_path=_snippet,
    # generated times are within 10 days of now, but a sentAt 10 days before the timestamp
    # moves the event ahead by as much; SendGrid's unix timestamps span 2000-2100
    event_max_age_days=20_000,
    event_max_ahead_s=80 * 365 * 86400,
    _env_file=None,  # type: ignore[call-arg]
)
_collector_app = create_collector(COLLECTOR_SETTINGS, ListProducer())
_basic = "Basic " + base64.b64encode(f"{KEY}:".encode()).decode()
# Other routes to the same handlers and bodies (analytics.js' short routes, the batch
# aliases) get the fuzzing phase only: the coverage phase's thousands of boundary cases
# per batch route run once, on the canonical route.
ALIASES = r"^/(v1/[tpsiagb]|v1/import|beacon/v1/batch)$"
collector = schemathesis.openapi.from_asgi("/openapi.json", _collector_app).exclude(
    path_regex=ALIASES
)
_configure(collector, _basic)
collector_aliases = schemathesis.openapi.from_asgi("/openapi.json", _collector_app).include(
    path_regex=ALIASES
)
_configure(collector_aliases, _basic, phases=["examples", "fuzzing"])


# JSON Schema counts 3.0 as an integer; the contract's integers (msgspec, strict) take 3 only,
# as every JavaScript client sends them. Not a difference a client meets: whole floats in the
# contract's integer fields are sent as integers.
_INTEGERS = frozenset({"pointsRedeemed", "quantity"})


def _whole(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: int(v) if k in _INTEGERS and isinstance(v, float) and v.is_integer() else _whole(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_whole(v) for v in value]
    return value


@collector.hook
def map_body(_context: Any, body: Any) -> Any:
    return _whole(body)


collector_aliases.hook(map_body)


def _record(case: Any, status: int) -> None:
    mode = case.meta.generation.mode.value if case.meta else "explicit"
    CASES[(case.operation.label, mode, status)] += 1


# Routes that take many items answer 200 with the invalid ones listed in `rejected` (and
# dead-lettered) while the valid ones are stored: that is how they reject an invalid item.
PER_ITEM = re.compile(
    r"^/(v1/(batch|import|b|webhooks/sendgrid|pos/transactions)|beacon/v1/batch)$"
)


def invalid_items_rejected(ctx: Any, response: Any, case: Any) -> bool | None:
    if response.status_code == 200 and response.json().get("rejected"):
        return None
    result: bool | None = negative_data_rejection(ctx, response, case)
    return result


def _validate_collector(case: Any) -> None:
    if PER_ITEM.match(case.operation.path):
        response = case.call_and_validate(
            excluded_checks=[negative_data_rejection], additional_checks=[invalid_items_rejected]
        )
    else:
        response = case.call_and_validate()
    _record(case, response.status_code)


@collector.parametrize()
def test_collector_matches_its_document(case: Any) -> None:
    _validate_collector(case)


@collector_aliases.parametrize()
def test_collector_aliases_match_the_document(case: Any) -> None:
    _validate_collector(case)


# --- the profile API -------------------------------------------------------------------

API_SETTINGS = Settings(
    read_keys=KEY,
    write_keys=KEY,
    topic_prefix="fuzz.",
    _env_file=None,  # type: ignore[call-arg]
)
api = schemathesis.openapi.from_asgi(
    "/openapi.json",
    create_api(
        API_SETTINGS,
        redis=FakeRedis(RedisKeys(API_SETTINGS.redis_prefix)),  # type: ignore[arg-type]
        producer=ListProducer(),
    ),
)
_configure(api, f"Bearer {KEY}")


# Whether a lookup value is an email or a phone depends on the identifier type in the same
# path, and slots and time zones come from the rules file and the tz database: the document
# says so in words and lists 400 for them, so a schema-valid value may rightly get a 400.
VALUES_IN_WORDS = ("/v1/profiles/by/", "/v1/personalize/")


@api.parametrize()
def test_api_matches_its_document(case: Any) -> None:
    excluded = (
        [positive_data_acceptance]
        if case.operation.path.startswith(VALUES_IN_WORDS)
        and case.operation.path != "/v1/personalize/rules"
        else []
    )
    response = case.call_and_validate(excluded_checks=excluded)
    _record(case, response.status_code)


@pytest.fixture(scope="module", autouse=True)
def _summary() -> Iterator[None]:
    """Cases per operation, mode and status (shown with -s or -rA)."""
    yield
    by_op: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for (label, mode, status), n in sorted(CASES.items()):
        by_op[label][f"{mode} {status}"] += n
    for label, counts in by_op.items():
        total = sum(counts.values())
        print(f"{label}: {total} cases, " + ", ".join(f"{k}: {v}" for k, v in counts.items()))
