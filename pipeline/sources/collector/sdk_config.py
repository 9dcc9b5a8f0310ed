"""What browser SDKs load from their vendor's CDN, served by the collector instead.

analytics.js (analytics-next) fetches ``{cdnURL}/v1/projects/{writeKey}/settings``;
pointing ``cdnURL`` at the collector makes it deliver here. Routes that SDKs read
(not write) live in this module; the collector app mounts :func:`sdk_routes`.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pipeline.config import Settings
from pipeline.sources.collector.auth import is_valid
from pipeline.sources.collector.responses import json_response


def sdk_routes(settings: Settings) -> list[Route]:
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
            }
        )

    return [Route("/v1/projects/{write_key}/settings", project_settings, methods=["GET"])]
