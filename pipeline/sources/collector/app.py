"""HTTP routes of the collector (Starlette, served by uvicorn).

Every route does the same four things: authenticate, read a bounded body, turn
it into records with :class:`Ingestor`, and answer only after Kafka acknowledged
every record (200), or say precisely what was wrong (400/401/413) or that
nothing was stored (503).
"""

from __future__ import annotations

import gzip
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pipeline.config import Settings, get_settings
from pipeline.errors import TerminalError, TransientError
from pipeline.events import (
    Alias,
    Consent,
    CookieSync,
    Envelope,
    Group,
    Identify,
    Page,
    PosTransaction,
    Screen,
    Support,
    Track,
)
from pipeline.kafka.producer import ConfirmedProducer
from pipeline.logs import get_logger
from pipeline.metrics import CONTENT_TYPE, REQUEST_SECONDS, REQUESTS, exposition
from pipeline.sources.collector.auth import is_valid, key_from_header
from pipeline.sources.collector.body import BodyError, read_bounded
from pipeline.sources.collector.openapi import openapi_document
from pipeline.sources.collector.rate_limit import KeyRateLimiter
from pipeline.sources.collector.responses import error_response, json_response
from pipeline.sources.collector.sdk_config import sdk_routes
from pipeline.sources.collector.webhooks import sendgrid_events
from pipeline.sources.ingest import Ingestor, Prepared
from pipeline.transforms.request_context import RequestContext, client_ip, truncate_ip
from pipeline.transforms.validate import MALFORMED, malformed

log = get_logger("collector")
_encode = msgspec.json.Encoder().encode

SINGLE_ENDPOINTS: dict[str, type[Envelope]] = {
    "/v1/track": Track,
    "/v1/page": Page,
    "/v1/screen": Screen,
    "/v1/identify": Identify,
    "/v1/alias": Alias,
    "/v1/group": Group,
    "/v1/cookie-sync": CookieSync,
    "/v1/consent": Consent,
    "/v1/support": Support,
    "/v1/pos/transactions": PosTransaction,
}
# Segment's analytics.js (analytics-next) posts each call to a one-letter route with the
# write key inside a text/plain JSON body (no CORS preflight), and batches to /v1/b.
SHORT_ROUTES = {
    "/v1/t": "/v1/track",
    "/v1/p": "/v1/page",
    "/v1/i": "/v1/identify",
    "/v1/a": "/v1/alias",
    "/v1/s": "/v1/screen",
    "/v1/g": "/v1/group",
}
BATCH_ROUTES = ("/v1/batch", "/v1/import", "/v1/b", "/beacon/v1/batch")
# Request headers browser SDKs send (RudderStack's JS SDK asks for anonymousid and sentat
# in its preflight). Retries add analytics-next's x-retry-count and RudderStack's rsa-*
# headers: without them a retried event fails its preflight and is lost.
CORS_HEADERS = [
    "authorization",
    "content-type",
    "content-encoding",
    "anonymousid",
    "sentat",
    "x-retry-count",
    "rsa-recovered",
    "rsa-retry-attempt",
    "rsa-retry-reason",
    "rsa-since-first-attempt",
    "rsa-since-last-attempt",
]


class HTTPError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        error_type: str = "request",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.error_type = status, message, error_type
        self.headers = headers


class _BatchBody(msgspec.Struct, rename="camel"):
    batch: list[msgspec.Raw]
    # with a zone, as every event time: a naive one cannot correct an aware timestamp
    sent_at: Annotated[datetime, msgspec.Meta(tz=True)] | None = None
    write_key: str | None = None
    # Segment's batch API: context and integrations for every event of the batch
    context: dict[str, Any] = {}
    integrations: dict[str, Any] = {}


class _KeyOnly(msgspec.Struct, rename="camel"):
    write_key: str | None = None


class Collector:
    """State shared by the routes: settings, the ingestor and the Kafka producer."""

    def __init__(self, settings: Settings, producer: ConfirmedProducer | None = None) -> None:
        self.settings = settings
        self.ingestor = Ingestor(settings)
        self.producer = producer
        self._keys = settings.write_key_set
        self.limiter = KeyRateLimiter(settings.rate_limit_per_key, settings.rate_limit_burst)
        self._batch_decoder = msgspec.json.Decoder(_BatchBody)
        self._key_decoder = msgspec.json.Decoder(_KeyOnly)

    # --- request plumbing ----------------------------------------------------

    async def read_body(self, request: Request) -> bytes:
        limit = self.settings.max_batch_bytes
        try:
            body = await read_bounded(request, limit, self.settings.body_timeout_s)
        except BodyError as exc:
            raise HTTPError(exc.status, exc.message, exc.error_type) from None
        encoding = request.headers.get("content-encoding", "").lower()
        if encoding in ("gzip", "deflate"):
            try:
                decompressor = zlib.decompressobj(zlib.MAX_WBITS | 32)
                body = decompressor.decompress(body, limit + 1)
            except (zlib.error, gzip.BadGzipFile) as exc:
                raise HTTPError(400, f"body is not valid {encoding}: {exc}", "malformed") from None
            if len(body) > limit or decompressor.unconsumed_tail:
                raise HTTPError(413, f"decompressed body exceeds {limit} bytes", "too_large")
        if not body:
            raise HTTPError(400, "empty body: expected a JSON document", "malformed")
        return body

    def authenticate(self, request: Request, body: bytes) -> None:
        header = request.headers.get("authorization")
        key = key_from_header(header)
        if key is None and header is None:
            # Browser SDKs cannot set headers on a beacon or without a preflight: the key
            # comes inside the body (analytics.js) or in the query string (RudderStack).
            key = request.query_params.get("writeKey")
            if key is None:
                try:
                    key = self._key_decoder.decode(body).write_key
                except (*MALFORMED, msgspec.ValidationError):
                    key = None
        if key is None:
            raise HTTPError(
                401, "missing write key: use HTTP Basic auth with the write key as user"
            )
        if not is_valid(key, self._keys):
            raise HTTPError(401, "invalid write key")
        wait = self.limiter.retry_after(key)
        if wait:
            raise HTTPError(
                429,
                f"more than {self.limiter.rate:g} requests/s with this write key"
                f" (CRM_RATE_LIMIT_PER_KEY); retry in {wait} s",
                "rate_limited",
                {"Retry-After": str(wait)},
            )

    def request_context(
        self,
        request: Request,
        batch_context: dict[str, Any] | None = None,
        batch_integrations: dict[str, Any] | None = None,
    ) -> RequestContext:
        """What the request adds to its events' context: address, user agent, batch context."""
        mode = self.settings.ip_capture
        ip = None
        if mode != "off":
            header = self.settings.trusted_ip_header
            forwarded = request.headers.get(header) if header else None
            ip = client_ip(request.client.host if request.client else None, forwarded)
            if ip and mode == "truncated":
                ip = truncate_ip(ip)
        return RequestContext(
            ip=ip,
            user_agent=request.headers.get("user-agent"),
            batch_context=batch_context or {},
            batch_integrations=batch_integrations or {},
        )

    async def publish(self, prepared: Prepared, source: str) -> None:
        if self.producer is None:
            raise TransientError("collector not started")
        await self.producer.send_async(prepared.records)
        Ingestor.count(prepared, source)

    async def dead_letter_body(self, body: bytes, exc: TerminalError, source: str) -> None:
        prepared = Prepared()
        self.ingestor.add_rejected(prepared, body, exc, source, datetime.now(UTC), None)
        await self.publish(prepared, source)

    @staticmethod
    def outcome(prepared: Prepared, *, single: bool) -> Response:
        rejected = [
            {"index": r.index, "type": r.error_type, "reason": r.reason} for r in prepared.rejected
        ]
        if single and prepared.rejected:
            first = prepared.rejected[0]
            status = 413 if first.error_type == "too_large" else 400
            return error_response(status, first.error_type, first.reason)
        if prepared.accepted == 0 and rejected:
            return error_response(
                400,
                "invalid",
                "every event in the request was rejected",
                accepted=0,
                rejected=rejected,
            )
        body: dict[str, Any] = {
            "success": True,
            "accepted": prepared.accepted,
            "rejected": rejected,
        }
        if prepared.warnings:
            body["warnings"] = [{"index": i, "message": m} for i, m in prepared.warnings]
        return json_response(body)

    # --- routes --------------------------------------------------------------

    async def single(self, request: Request) -> Response:
        path = SHORT_ROUTES.get(request.url.path, request.url.path)
        expected = SINGLE_ENDPOINTS[path]
        body = await self.read_body(request)
        self.authenticate(request, body)
        source = path.removeprefix("/v1/")
        stripped = body.lstrip()
        if stripped[:1] == b"[" and expected is PosTransaction:
            try:
                items = msgspec.json.decode(body, type=list[msgspec.Raw])
            except (*MALFORMED, msgspec.ValidationError) as exc:
                reason = malformed(exc)
                await self.dead_letter_body(body, TerminalError(reason, "malformed"), source)
                raise HTTPError(400, reason, "malformed") from None
            prepared = self.ingestor.prepare_raw(
                items, source=source, expected=expected, request=self.request_context(request)
            )
            await self.publish(prepared, source)
            return self.outcome(prepared, single=False)
        prepared = self.ingestor.prepare_raw(
            [body], source=source, expected=expected, request=self.request_context(request)
        )
        await self.publish(prepared, source)
        return self.outcome(prepared, single=True)

    async def batch(self, request: Request) -> Response:
        body = await self.read_body(request)
        self.authenticate(request, body)
        try:
            parsed = self._batch_decoder.decode(body)
        except (*MALFORMED, msgspec.ValidationError) as exc:
            kind = "schema" if isinstance(exc, msgspec.ValidationError) else "malformed"
            reason = malformed(exc) if kind == "malformed" else f"batch body: {exc}"
            await self.dead_letter_body(body, TerminalError(reason, kind), "batch")
            raise HTTPError(400, reason, kind) from None
        if not parsed.batch:
            raise HTTPError(400, "batch is empty", "schema")
        prepared = self.ingestor.prepare_raw(
            parsed.batch,
            source="batch",
            batch_sent_at=parsed.sent_at,
            request=self.request_context(request, parsed.context, parsed.integrations),
        )
        await self.publish(prepared, "batch")
        return self.outcome(prepared, single=False)

    async def sendgrid(self, request: Request) -> Response:
        body = await self.read_body(request)
        self.authenticate(request, body)
        try:
            items = msgspec.json.decode(body, type=list[dict[str, Any]])
        except (*MALFORMED, msgspec.ValidationError) as exc:
            reason = f"expected a JSON array of SendGrid events: {malformed(exc)}"
            await self.dead_letter_body(body, TerminalError(reason, "malformed"), "sendgrid")
            raise HTTPError(400, reason, "malformed") from None
        mapped = sendgrid_events(items)
        prepared = self.ingestor.prepare_events(mapped, source="sendgrid")
        await self.publish(prepared, "sendgrid")
        return self.outcome(prepared, single=False)


def _route(
    collector: Collector, name: str, handler: Callable[[Request], Awaitable[Response]]
) -> Callable[[Request], Awaitable[Response]]:
    """Wrap a handler with error mapping, metrics and one log line per failure."""

    async def endpoint(request: Request) -> Response:
        start = time.perf_counter()
        try:
            response = await handler(request)
        except HTTPError as exc:
            response = error_response(exc.status, exc.error_type, exc.message, exc.headers)
        except TransientError as exc:
            log.warning("kafka unavailable, answering 503", route=name, error=str(exc))
            response = error_response(
                503, "unavailable", f"events not stored: {exc}", headers={"Retry-After": "1"}
            )
        REQUESTS.labels(name, str(response.status_code)).inc()
        REQUEST_SECONDS.labels(name).observe(time.perf_counter() - start)
        return response

    return endpoint


def create_app(
    settings: Settings | None = None, producer: ConfirmedProducer | None = None
) -> Starlette:
    settings = settings or get_settings()
    collector = Collector(settings, producer)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        owned = collector.producer is None
        if owned:
            collector.producer = ConfirmedProducer(
                settings.kafka_bootstrap, ack_timeout_ms=settings.ack_timeout_ms
            )
        log.info("collector ready", kafka=settings.kafka_bootstrap)
        yield
        if owned and collector.producer is not None:
            collector.producer.close()

    async def health(_request: Request) -> Response:
        return json_response({"status": "ok"})

    async def metrics(_request: Request) -> Response:
        return Response(exposition(), media_type=CONTENT_TYPE)

    async def openapi(_request: Request) -> Response:
        return json_response(openapi_document())

    routes = [
        Route(p, _route(collector, p, collector.single), methods=["POST"]) for p in SINGLE_ENDPOINTS
    ]
    routes += [
        Route(short, _route(collector, long, collector.single), methods=["POST"])
        for short, long in SHORT_ROUTES.items()
    ]
    routes += [
        Route(p, _route(collector, "/v1/batch", collector.batch), methods=["POST"])
        for p in BATCH_ROUTES
    ]
    routes += sdk_routes(settings)
    routes += [
        Route(
            "/v1/webhooks/sendgrid",
            _route(collector, "/v1/webhooks/sendgrid", collector.sendgrid),
            methods=["POST"],
        ),
        Route("/health", health),
        Route("/metrics", metrics),
        Route("/openapi.json", openapi),
    ]
    origins = [o.strip() for o in settings.cors_origins.split(",") if o.strip()]
    middleware = [
        Middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["POST", "GET", "OPTIONS"],
            allow_headers=CORS_HEADERS,
            allow_credentials="*" not in origins,
            max_age=86400,
        )
    ]
    return Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
