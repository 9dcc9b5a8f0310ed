"""What browser SDKs load from their vendor's CDN, served by the collector instead.

* analytics.js (analytics-next) fetches ``{cdnURL}/v1/projects/{writeKey}/settings``;
  pointing ``cdnURL`` at the collector (or at ``CRM_CDN_PATH`` under it) makes it
  deliver here.
* RudderStack's JS SDK fetches ``{configUrl}/sourceConfig/?p=..&v=..&writeKey=..``
  (write key also as HTTP Basic auth); pointing ``configUrl`` at the collector gives it
  an enabled source without device-mode destinations, so it only sends to its
  ``dataPlaneUrl``.
* ``/v1/crm.js`` is the tracking snippet built from ``web/src/crm.ts``: analytics-next
  bundled whole and configured for the collector that served it, so a site adds one
  ``<script src=".../v1/crm.js?writeKey=KEY">``.

Routes that SDKs read (not write) live in this module; the collector app mounts
:func:`sdk_routes`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pipeline.config import Settings
from pipeline.sources.collector.auth import is_valid, key_from_header
from pipeline.sources.collector.responses import json_response

SNIPPET_ROUTE = "/v1/crm.js"
SETTINGS_ROUTE = "/v1/projects/{write_key}/settings"
SOURCE_CONFIG_ROUTES = ("/sourceConfig", "/sourceConfig/")
# The snippet is the same for every site (the write key is in its URL): browsers may keep
# it a few minutes, then revalidate with its ETag; a deploy shows within that time.
SNIPPET_CACHE = "public, max-age=300"
SETTINGS_CACHE = "public, max-age=60"


@dataclass(frozen=True)
class _Snippet:
    mtime_ns: int
    size: int
    body: bytes
    etag: str


class SnippetFile:
    """The built snippet, read once and again only when the file changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._cached: _Snippet | None = None

    def load(self) -> _Snippet | None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._cached = None
            return None
        cached = self._cached
        if cached is not None and (cached.mtime_ns, cached.size) == (
            stat.st_mtime_ns,
            stat.st_size,
        ):
            return cached
        body = self.path.read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        self._cached = _Snippet(stat.st_mtime_ns, stat.st_size, body, etag)
        return self._cached


def cdn_prefix(cdn_path: str) -> str:
    """``CRM_CDN_PATH`` as a route prefix: ``""``, or ``/segment-cdn`` without a trailing slash."""
    stripped = cdn_path.strip().strip("/")
    return f"/{stripped}" if stripped else ""


def source_config(write_key: str) -> dict[str, object]:
    """The answer of RudderStack's ``/sourceConfig`` endpoint as the JS SDK v3 reads it:
    ``source.id``, ``source.config`` (an object) and ``source.destinations`` (a list) are
    required, ``source.enabled: false`` would stop the SDK; statistics collection (error
    and metrics reports to RudderStack) stays off."""
    source_id = "crm-" + hashlib.sha256(write_key.encode()).hexdigest()[:16]
    return {
        "isHosted": False,
        "source": {
            "id": source_id,
            "name": "crm-pipeline",
            "writeKey": write_key,
            "workspaceId": "crm-pipeline",
            "enabled": True,
            "config": {
                "statsCollection": {"errors": {"enabled": False}, "metrics": {"enabled": False}}
            },
            "destinations": [],
        },
    }


def sdk_routes(settings: Settings) -> list[Route]:
    snippet = SnippetFile(settings.snippet_path)

    async def project_settings(request: Request) -> Response:
        # What analytics.js loads from its CDN (cdnURL pointed here): deliver to this host.
        key = request.path_params["write_key"]
        if not is_valid(key, settings.write_key_set):
            return json_response({"error": "unknown write key"}, 404)
        host = f"{request.url.netloc}/v1"
        segment = {"apiKey": key, "apiHost": host, "protocol": request.url.scheme}
        return json_response(
            {
                "integrations": {"Segment.io": segment},
                "plan": {"track": {"__default": {"enabled": True, "integrations": {}}}},
                "enabledMiddleware": {},
                "metrics": {"sampleRate": 0},
            },
            headers={"Cache-Control": SETTINGS_CACHE},
        )

    async def rudderstack_source_config(request: Request) -> Response:
        # RudderStack's JS SDK sends the key both in the query and as HTTP Basic auth.
        key = request.query_params.get("writeKey") or key_from_header(
            request.headers.get("authorization")
        )
        if not key:
            return json_response({"error": "missing write key: add ?writeKey=KEY"}, 401)
        if not is_valid(key, settings.write_key_set):
            return json_response({"error": "unknown write key"}, 404)
        return json_response(source_config(key), headers={"Cache-Control": SETTINGS_CACHE})

    async def tracking_snippet(request: Request) -> Response:
        current = snippet.load()
        if current is None:
            return json_response(
                {
                    "error": f"tracking snippet not built: {snippet.path} is missing; "
                    "run `make setup` (or `npm ci && node build.mjs` in web/), "
                    "or point CRM_SNIPPET_PATH at a built crm.js"
                },
                503,
            )
        headers = {"Cache-Control": SNIPPET_CACHE, "ETag": current.etag}
        if current.etag in _etags(request.headers.get("if-none-match", "")):
            return Response(status_code=304, headers=headers)
        return Response(
            current.body, headers=headers, media_type="application/javascript; charset=utf-8"
        )

    settings_paths = {SETTINGS_ROUTE, cdn_prefix(settings.cdn_path) + SETTINGS_ROUTE}
    routes = [Route(p, project_settings, methods=["GET"]) for p in sorted(settings_paths)]
    routes += [Route(p, rudderstack_source_config, methods=["GET"]) for p in SOURCE_CONFIG_ROUTES]
    routes.append(Route(SNIPPET_ROUTE, tracking_snippet, methods=["GET"]))
    return routes


def _etags(header: str) -> set[str]:
    """Entity tags of an If-None-Match header (weak ones compare equal, as RFC 9110 says)."""
    return {t.strip().removeprefix("W/") for t in header.split(",") if t.strip()}
