"""The profile lookup API: one Redis round trip or two, never Kafka or ClickHouse.

Identifier values are canonicalised exactly as the collector does (emails and
phones normalised and hashed with the same salt), so a website can look a
customer up by the raw email it has.
"""

from __future__ import annotations

import gc
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import BusyLoadingError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pipeline.api.customer_token import TokenError, verify
from pipeline.api.openapi import IDENTIFIER_TYPES, OPENAPI
from pipeline.api.personalization import BadRequest, PreferenceCentre, answer
from pipeline.config import Settings, get_settings
from pipeline.errors import TransientError
from pipeline.kafka.producer import ConfirmedProducer
from pipeline.metrics import CONTENT_TYPE, REQUEST_SECONDS, REQUESTS, exposition
from pipeline.rule_files import load_personalization
from pipeline.rules_file import ReloadingFile
from pipeline.sources.collector.auth import is_valid, key_from_header
from pipeline.sources.collector.body import BodyError, read_bounded
from pipeline.stores.redis_client import async_redis, is_cluster
from pipeline.transforms.identifiers import IdentifierError, canonical
from pipeline.transforms.profile import Profile
from pipeline.transforms.profile_view import render
from pipeline.wire.keys import FORGOTTEN, LUA_BUCKET, RedisKeys

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(Profile).decode


def _json(payload: Any, status: int = 200) -> Response:
    return Response(_encode(payload), status, media_type="application/json")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _error(status: int, message: str) -> Response:
    return _json({"error": {"status": status, "message": message}}, status)


# One round trip per lookup on a single Redis: identifier -> customer -> profile, following
# merges to the survivor. Key names come from pipeline.wire.keys as ARGV fragments (the
# profile key's bucket computed by the same function as in Python); on a Redis Cluster the
# keys of one lookup are in several slots, so ProfileReader walks the same steps itself.
LOOKUP = (
    LUA_BUCKET
    + """
local cid = ARGV[2]
if KEYS[1] ~= '' then
  cid = redis.call('GET', KEYS[1])
  if not cid then return false end
end
for _ = 1, 10 do
  local v = redis.call('HMGET', ARGV[1] .. bucket(cid) .. ARGV[6] .. cid, 'json', 'm')
  if v[1] then return {cid, v[1]} end
  if v[2] == ARGV[5] then return false end
  local nxt = v[2] or redis.call('GET', ARGV[3] .. cid .. ARGV[4])
  if not nxt then return false end
  cid = nxt
end
return false
"""
)
MAX_HOPS = 10


class ProfileReader:
    def __init__(self, settings: Settings, client: aioredis.Redis) -> None:
        self.settings, self.r = settings, client
        self.keys = RedisKeys(settings.redis_prefix)
        self.salt = settings.pii_salt.get_secret_value()
        self._lookup = client.register_script(LOOKUP)
        self.cluster = is_cluster(client)

    async def _find(self, id_key: str, cid: str) -> tuple[str, Profile] | None:
        if self.cluster:
            return await self._walk(id_key, cid)
        k = self.keys
        head, tail = k.profile_parts()
        args = [head, cid, k.customer_prefix, k.MERGED_SUFFIX, FORGOTTEN, tail]
        found = await self._lookup(keys=[id_key], args=args)
        if not found:
            return None
        owner, raw = found
        return _text(owner), _decode(raw)

    async def _walk(self, id_key: str, cid: str) -> tuple[str, Profile] | None:
        """LOOKUP's steps one command at a time (a cluster routes each to its slot)."""
        if id_key:
            owner = await self.r.get(id_key)
            if not owner:
                return None
            cid = _text(owner)
        for _ in range(MAX_HOPS):
            raw, merged = await self.r.hmget(self.keys.profile(cid), ["json", "m"])
            if raw:
                return cid, _decode(raw)
            if merged and _text(merged) == FORGOTTEN:
                return None
            nxt = merged or await self.r.get(self.keys.merged_into(cid))
            if not nxt:
                return None
            cid = _text(nxt)
        return None

    async def by_customer(self, cid: str) -> tuple[str, Profile] | None:
        """The profile of ``cid``, or of the customer that absorbed it."""
        return await self._find("", cid)

    async def by_identifier(self, kind: str, raw: str) -> tuple[str, Profile] | None:
        """Profile by an identifier as a website has it; raises IdentifierError if invalid."""
        if kind not in IDENTIFIER_TYPES:
            raise IdentifierError(
                f"unknown identifier type {kind!r}; one of {', '.join(IDENTIFIER_TYPES)}"
            )
        value = raw
        if kind == "partner":
            partner, _, value = raw.partition(":")
            kind = f"partner:{partner}"
        value = canonical(kind, value, salt=self.salt, hash_pii=self.settings.hash_pii)
        return await self._find(self.keys.identifier(kind, value), "")


def create_app(
    settings: Settings | None = None,
    *,
    redis: aioredis.Redis | None = None,
    producer: ConfirmedProducer | None = None,
) -> Starlette:
    """The API; ``redis`` and ``producer`` are made from settings unless given (tests)."""
    settings = settings or get_settings()
    read_keys, write_keys = settings.read_key_set, settings.write_key_set
    max_body = settings.api_max_body_bytes
    state: dict[str, Any] = {}
    rules = ReloadingFile(
        settings.personalization_rules, load_personalization, settings.rules_reload_s
    )

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        client = redis if redis is not None else async_redis(settings)
        kafka = producer or ConfirmedProducer(
            settings.kafka_bootstrap, ack_timeout_ms=settings.ack_timeout_ms
        )
        reader = ProfileReader(settings, client)
        state["reader"] = reader
        state["preferences"] = PreferenceCentre(reader, kafka, settings.topic("events"))
        # Long-lived objects (modules, rules) out of the collector's way: full collections
        # then scan only per-request garbage, which keeps the latency tail short.
        gc.collect()
        gc.freeze()
        yield
        if producer is None:
            kafka.close()
        if redis is None:
            await client.aclose()

    def authorized(request: Request, keys: frozenset[str]) -> bool:
        key = key_from_header(request.headers.get("authorization")) or request.headers.get(
            "x-api-key"
        )
        return is_valid(key, keys)

    def for_customer(request: Request) -> Response | None:
        """A change to one customer: a (server-side) read key, or the write key with a
        customer token issued for exactly that customer (``customer_token.py``)."""
        if authorized(request, read_keys):
            return None
        if not authorized(request, write_keys):
            return _error(401, "missing or invalid key (Authorization: Bearer <key>)")
        try:
            verify(
                settings.customer_token_secret,
                request.headers.get("x-customer-token"),
                request.path_params["customer_id"],
            )
        except TokenError as exc:
            return _error(403, str(exc))
        return None

    def timed(route: str, handler: Any, customer: bool = False) -> Any:
        async def endpoint(request: Request) -> Response:
            start = time.perf_counter()
            if customer:
                refused = for_customer(request)
            elif not authorized(request, read_keys):
                refused = _error(401, "missing or invalid read key (Authorization: Bearer <key>)")
            else:
                refused = None
            response = refused or await handler(request)
            REQUESTS.labels(route, str(response.status_code)).inc()
            REQUEST_SECONDS.labels(route).observe(time.perf_counter() - start)
            return response

        return endpoint

    async def profile(request: Request) -> Response:
        cid = request.path_params["customer_id"]
        found = await state["reader"].by_customer(cid)
        if found is None:
            return _error(404, f"no customer {cid!r}")
        return _json(render(found[1], int(time.time() * 1000)) | {"requested": cid})

    async def by_identifier(request: Request) -> tuple[str, Profile] | Response | None:
        """The profile for the path's identifier, or a 400 for an invalid one."""
        kind, value = request.path_params["identifier_type"], request.path_params["value"]
        try:
            return await state["reader"].by_identifier(kind, value)
        except IdentifierError as exc:
            return _error(400, str(exc))

    async def profile_by(request: Request) -> Response:
        found = await by_identifier(request)
        if isinstance(found, Response):
            return found
        kind = request.path_params["identifier_type"]
        if found is None:
            return _error(404, f"no customer with {kind} {request.path_params['value']!r}")
        return _json(render(found[1], int(time.time() * 1000)))

    async def personalize(request: Request) -> Response:
        found = await state["reader"].by_customer(request.path_params["customer_id"])
        return _decide(request, found)

    async def personalize_by(request: Request) -> Response:
        found = await by_identifier(request)
        return found if isinstance(found, Response) else _decide(request, found)

    def _decide(request: Request, found: tuple[str, Profile] | None) -> Response:
        config = rules.current()
        try:
            return _json(answer(config, request, found, config.digest))
        except BadRequest as exc:
            return _error(400, str(exc))

    async def rules_status(_request: Request) -> Response:
        rules.current()
        return _json(rules.status() | {"slots": list(rules.value.slots)})

    async def preferences(request: Request) -> Response:
        cid = request.path_params["customer_id"]
        try:
            body = await read_bounded(request, max_body, settings.body_timeout_s)
        except BodyError as exc:
            return _error(
                exc.status,
                f"{exc.message} (CRM_API_MAX_BODY_BYTES)" if exc.status == 413 else exc.message,
            )
        try:
            result = await state["preferences"].update(cid, body)
        except BadRequest as exc:
            return _error(400, str(exc))
        except TransientError as exc:
            return _error(503, f"could not record the preferences, retry: {exc}")
        if result is None:
            return _error(404, f"no customer {cid!r}")
        return _json(result, 202)

    async def health(_request: Request) -> Response:
        return _json({"status": "ok"})

    async def metrics(_request: Request) -> Response:
        return Response(exposition(), media_type=CONTENT_TYPE)

    async def openapi(_request: Request) -> Response:
        return _json(OPENAPI)

    async def unavailable(_request: Request, exc: Exception) -> Response:
        # Redis away (restart, failover): a lookup is retryable, not a server bug.
        response = _error(503, f"profile store unavailable, retry: {type(exc).__name__}")
        response.headers["Retry-After"] = "1"
        return response

    async def no_route(request: Request, _exc: Exception) -> Response:
        return _error(404, f"no such route: {request.url.path[:200]!r}")

    return Starlette(
        exception_handlers={
            404: no_route,
            RedisConnectionError: unavailable,
            RedisTimeoutError: unavailable,
            BusyLoadingError: unavailable,
        },
        routes=[
            Route("/v1/profiles/{customer_id}", timed("/v1/profiles", profile)),
            Route(
                "/v1/profiles/by/{identifier_type}/{value:path}",
                timed("/v1/profiles/by", profile_by),
            ),
            Route("/v1/personalize/rules", timed("/v1/personalize/rules", rules_status)),
            Route(
                "/v1/personalize/by/{identifier_type}/{value:path}",
                timed("/v1/personalize/by", personalize_by),
            ),
            Route("/v1/personalize/{customer_id}", timed("/v1/personalize", personalize)),
            Route(
                "/v1/profiles/{customer_id}/preferences",
                timed("/v1/profiles/preferences", preferences, customer=True),
                methods=["PUT"],
            ),
            Route("/health", health),
            Route("/metrics", metrics),
            Route("/openapi.json", openapi),
        ],
        lifespan=lifespan,
    )
