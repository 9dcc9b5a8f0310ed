"""The identity stage against the real Redis: what it routes, and which records it tags
``repeat`` (the ClickHouse sink looks only those up before inserting)."""

from __future__ import annotations

import asyncio
import uuid

from pipeline.config import Settings
from pipeline.events import Page
from pipeline.stores.identity_redis import RedisIdentityGraph
from pipeline.stores.redis_client import async_redis
from pipeline.testing import Outbox
from pipeline.transforms.identity import Rules
from pipeline.wire.records import RoutedEvent, encoder, routed_decoder
from pipeline.worker.identity_stage import IdentityStage


def page(event_id: str | None, user: str) -> bytes:
    event = Page(message_id=event_id, user_id=user, name="Home", identities={"user_id": user})
    return encoder.encode(event)


def routed(out: Outbox) -> list[tuple[str, str, bool]]:
    records = [routed_decoder.decode(v or b"") for t, _k, v in out.take() if t == "by_customer"]
    return [
        (r.event.message_id or "", r.customer_id, r.repeat)
        for r in records
        if isinstance(r, RoutedEvent)
    ]


def test_an_event_id_routed_before_is_tagged_repeat(settings: Settings) -> None:
    async def run() -> tuple[list[tuple[str, str, bool]], list[tuple[str, str, bool]]]:
        r = async_redis(settings)
        graph = RedisIdentityGraph(r, f"{settings.redis_prefix}{uuid.uuid4().hex[:6]}:", Rules())
        first, second = Outbox(), Outbox()
        kw = {"by_customer": "by_customer", "merges": "merges", "dlq": "dlq"}
        # a second copy in the same batch, an id-less event twice, then a client's retry
        await IdentityStage(graph, first, **kw).process(
            [
                page("e1", "u1"),
                page("e2", "u2"),
                page("e1", "u1"),
                page(None, "u3"),
                page(None, "u3"),
            ]
        )
        await IdentityStage(graph, second, **kw).process([page("e2", "u2"), page("e3", "u2")])
        await r.aclose()
        return routed(first), routed(second)

    first, second = asyncio.run(run())
    assert [(e, repeat) for e, _c, repeat in first] == [
        ("e1", False),
        ("e2", False),
        ("e1", True),
        ("", False),
        ("", False),
    ]
    assert first[0][1] == first[2][1]  # the copy goes where the first went
    assert [(e, repeat) for e, _c, repeat in second] == [("e2", True), ("e3", False)]
    assert second[0][1] == first[1][1] == second[1][1]
