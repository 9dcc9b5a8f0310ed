"""In-memory stand-ins for the profile API's Redis, so its routes run without services."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import msgspec
from starlette.testclient import TestClient

from pipeline.config import Settings
from pipeline.testing import ListProducer
from pipeline.transforms.profile import Profile
from pipeline.wire.keys import RedisKeys

KNOWN = "c_0123456789abcdef0123456789abcdef"  # the example customer id of the API document


class FakeScript:
    """The API's one-round-trip lookup script, answered from dicts."""

    def __init__(self, redis: FakeRedis) -> None:
        self.redis = redis

    async def __call__(self, keys: list[str], args: list[str]) -> list[bytes] | None:
        cid = args[1]
        if keys[0]:
            owner = self.redis.strings.get(keys[0])
            if owner is None:
                return None
            cid = owner.decode()
        raw = self.redis.profiles.get(cid)
        return [cid.encode(), raw] if raw is not None else None


class FakeRedis:
    """The calls the API makes on a single (non-cluster) Redis; one known customer."""

    def __init__(self, keys: RedisKeys) -> None:
        profile = Profile(customer_id=KNOWN, identifiers={"user_id": ["u-known"]})
        self.profiles = {KNOWN: msgspec.json.encode(profile)}
        self.strings = {keys.identifier("user_id", "u-known"): KNOWN.encode()}

    def register_script(self, _source: str) -> FakeScript:
        return FakeScript(self)

    async def aclose(self) -> None:
        return None


@contextmanager
def api_client(settings: Settings) -> Iterator[TestClient]:
    """The profile API in process: Redis faked (one known customer), Kafka a list."""
    from pipeline.api.app import create_app

    app = create_app(
        settings,
        redis=FakeRedis(RedisKeys(settings.redis_prefix)),  # type: ignore[arg-type]
        producer=ListProducer(),
    )
    with TestClient(app) as client:
        yield client
