"""The collector's SDK-facing read routes: analytics.js settings, RudderStack's
sourceConfig and the /v1/crm.js tracking snippet."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from pipeline.config import Settings
from pipeline.sources.collector.sdk_config import cdn_prefix, sdk_routes


def _client(tmp_path: Path, **overrides: object) -> TestClient:
    fields: dict[str, object] = {
        "write_keys": "k1,k2",
        "snippet_path": tmp_path / "crm.js",
        **overrides,
    }
    settings = Settings(**fields)  # type: ignore[arg-type]
    return TestClient(Starlette(routes=sdk_routes(settings)))


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with _client(tmp_path) as c:
        yield c


def test_settings_point_analytics_js_at_this_collector(client: TestClient) -> None:
    r = client.get("/v1/projects/k1/settings", headers={"host": "collector.test:8080"})
    assert r.status_code == 200
    segment = r.json()["integrations"]["Segment.io"]
    assert segment == {"apiKey": "k1", "apiHost": "collector.test:8080/v1", "protocol": "http"}
    assert client.get("/v1/projects/nope/settings").status_code == 404


def test_settings_also_under_the_configured_cdn_path(tmp_path: Path) -> None:
    with _client(tmp_path, cdn_path="/segment-cdn/") as c:
        assert c.get("/segment-cdn/v1/projects/k2/settings").status_code == 200
        assert c.get("/v1/projects/k2/settings").status_code == 200


@pytest.mark.parametrize(
    ("raw", "prefix"), [("", ""), ("/", ""), ("cdn", "/cdn"), ("/a/b/", "/a/b"), (" x ", "/x")]
)
def test_cdn_prefix_is_normalised(raw: str, prefix: str) -> None:
    assert cdn_prefix(raw) == prefix


def test_rudderstack_source_config_is_an_enabled_source_without_destinations(
    client: TestClient,
) -> None:
    r = client.get("/sourceConfig/?p=npm&v=3.34.1&build=modern&writeKey=k1")
    assert r.status_code == 200
    source = r.json()["source"]
    assert source["enabled"] is True and source["destinations"] == []
    assert source["id"] and isinstance(source["config"], dict)
    assert source["config"]["statsCollection"]["errors"]["enabled"] is False
    basic = "Basic " + base64.b64encode(b"k2:").decode()
    assert client.get("/sourceConfig", headers={"authorization": basic}).status_code == 200
    assert client.get("/sourceConfig/?writeKey=nope").status_code == 404
    assert client.get("/sourceConfig/").status_code == 401


def test_snippet_missing_says_how_to_build_it(client: TestClient, tmp_path: Path) -> None:
    r = client.get("/v1/crm.js")
    assert r.status_code == 503
    message = r.json()["error"]
    assert str(tmp_path / "crm.js") in message and "make setup" in message


def test_snippet_is_served_with_validators_and_follows_rebuilds(
    client: TestClient, tmp_path: Path
) -> None:
    snippet = tmp_path / "crm.js"
    snippet.write_text("console.log('v1')")
    r = client.get("/v1/crm.js?writeKey=k1")
    assert r.status_code == 200 and r.text == "console.log('v1')"
    assert r.headers["content-type"].startswith("application/javascript")
    assert "max-age" in r.headers["cache-control"]
    etag = r.headers["etag"]
    assert client.get("/v1/crm.js", headers={"if-none-match": etag}).status_code == 304
    assert client.get("/v1/crm.js", headers={"if-none-match": f"W/{etag}"}).status_code == 304

    snippet.write_text("console.log('version 2')")
    r = client.get("/v1/crm.js", headers={"if-none-match": etag})
    assert r.status_code == 200 and "version 2" in r.text and r.headers["etag"] != etag
