"""The profile lookup API: one Redis round trip or two, never Kafka or ClickHouse.

Identifier values are canonicalised exactly as the collector does (emails and
phones normalised and hashed with the same salt), so a website can look a
customer up by the raw email it has.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import msgspec
import redis.asyncio as aioredis
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pipeline.config import Settings, get_settings
from pipeline.metrics import REQUEST_SECONDS, REQUESTS
from pipeline.sources.collector.auth import is_valid, key_from_header
from pipeline.transforms.identifiers import PRIORITY, IdentifierError, canonical
from pipeline.transforms.profile import Profile
from pipeline.transforms.profile_view import render

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(Profile).decode
IDENTIFIER_TYPES = (*PRIORITY, "partner")


def _json(payload: Any, status: int = 200) -> Response:
    return Response(_encode(payload), status, media_type="application/json")


def _error(status: int, message: str) -> Response:
    return _json({"error": {"status": status, "message": message}}, status)


class ProfileReader:
    def __init__(self, settings: Settings, client: aioredis.Redis) -> None:
        self.settings, self.r, self.p = settings, client, settings.redis_prefix
        self.salt = settings.pii_salt.get_secret_value()

    async def by_customer(self, cid: str) -> tuple[str, Profile] | None:
        for _ in range(10):  # follow merges to the survivor
            raw, merged = await self.r.hmget(f"{self.p}profile:{cid}", ["json", "m"])
            if raw:
                return cid, _decode(raw)
            if merged == b"(forgotten)":
                return None
            nxt = merged or await self.r.get(f"{self.p}cust:{cid}:merged_into")
            if not nxt:
                return None
            cid = nxt.decode() if isinstance(nxt, bytes) else nxt
        return None

    async def customer_for(self, kind: str, value: str) -> str | None:
        owner = await self.r.get(f"{self.p}id:{kind}:{value}")
        if not owner:
            return None
        return owner.decode() if isinstance(owner, bytes) else owner


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or get_settings()
    keys = settings.read_key_set
    state: dict[str, ProfileReader] = {}

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        client = aioredis.Redis.from_url(settings.redis_url)
        state["reader"] = ProfileReader(settings, client)
        yield
        await client.aclose()

    def authorized(request: Request) -> bool:
        key = key_from_header(request.headers.get("authorization")) or request.headers.get(
            "x-api-key"
        )
        return is_valid(key, keys)

    def timed(route: str, handler: Any) -> Any:
        async def endpoint(request: Request) -> Response:
            start = time.perf_counter()
            response = (
                await handler(request)
                if authorized(request)
                else _error(401, "missing or invalid read key (Authorization: Bearer <key>)")
            )
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

    async def profile_by(request: Request) -> Response:
        kind, value = request.path_params["identifier_type"], request.path_params["value"]
        if kind not in IDENTIFIER_TYPES:
            return _error(
                400, f"unknown identifier type {kind!r}; one of {', '.join(IDENTIFIER_TYPES)}"
            )
        if kind == "partner":
            partner, _, value = value.partition(":")
            kind = f"partner:{partner}"
        try:
            value = canonical(kind, value, salt=state["reader"].salt, hash_pii=settings.hash_pii)
        except IdentifierError as exc:
            return _error(400, str(exc))
        cid = await state["reader"].customer_for(kind, value)
        found = await state["reader"].by_customer(cid) if cid else None
        if found is None:
            return _error(404, f"no customer with {kind} {request.path_params['value']!r}")
        return _json(render(found[1], int(time.time() * 1000)))

    async def health(_request: Request) -> Response:
        return _json({"status": "ok"})

    async def metrics(_request: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    async def openapi(_request: Request) -> Response:
        return _json(OPENAPI)

    return Starlette(
        routes=[
            Route("/v1/profiles/{customer_id}", timed("/v1/profiles", profile)),
            Route(
                "/v1/profiles/by/{identifier_type}/{value:path}",
                timed("/v1/profiles/by", profile_by),
            ),
            Route("/health", health),
            Route("/metrics", metrics),
            Route("/openapi.json", openapi),
        ],
        lifespan=lifespan,
    )


_PROFILE_RESPONSES = {
    "200": {"description": "The profile with derived fields (RFM, loyalty balance, email totals)"},
    "400": {"description": "Unknown identifier type or a value that cannot be normalised"},
    "401": {"description": "Missing or invalid read key"},
    "404": {"description": "Unknown customer"},
}
OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "CRM pipeline profile API", "version": "0.1.0"},
    "components": {"securitySchemes": {"readKey": {"type": "http", "scheme": "bearer"}}},
    "security": [{"readKey": []}],
    "paths": {
        "/v1/profiles/{customer_id}": {
            "get": {
                "summary": "Profile by customer id (absorbed ids resolve to the survivor)",
                "parameters": [
                    {
                        "name": "customer_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    }
                ],
                "responses": _PROFILE_RESPONSES,
            }
        },
        "/v1/profiles/by/{identifier_type}/{value}": {
            "get": {
                "summary": "Profile by any identifier (emails, phones hashed as collected)",
                "parameters": [
                    {
                        "name": "identifier_type",
                        "in": "path",
                        "required": True,
                        "schema": {"enum": list(IDENTIFIER_TYPES)},
                    },
                    {
                        "name": "value",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                        "description": "for partner ids: <partner>:<id>",
                    },
                ],
                "responses": _PROFILE_RESPONSES,
            }
        },
    },
}
