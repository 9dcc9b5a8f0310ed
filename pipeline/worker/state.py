"""The profile stage's keyed state: profiles and their deduplication buckets.

Two kinds of keys live in one table, always in the partition of the customer
they belong to:

* ``<customer id>`` -> the profile, without its dedupe window;
* ``<customer id>\\x1fseen\\x1f<day>`` -> the ids of the events of that event-time
  day already folded into the profile.

Keeping event ids out of the profile makes a touch cost the same whatever the
customer's history: a flush reads and writes the profile and the buckets of the
days its events fall on, never the whole window. Buckets are written before the
profile into the same changelog partition, so a profile that survived a crash
implies its buckets did too.

``TableState`` writes the Faust table's local store directly and sends the
changelog record through the stage's ``Outputs`` (librdkafka) with an explicit
partition; Faust still owns recovery, standby and partition assignment.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, MutableMapping
from typing import Any, Protocol

import msgspec

from pipeline.worker.outputs import Outputs

SEEN_SEP = b"\x1fseen\x1f"
DAY_MS = 24 * 3600 * 1000

_ids_encoder = msgspec.msgpack.Encoder()
_ids_decoder = msgspec.msgpack.Decoder(list[str])


def profile_key(customer_id: str) -> bytes:
    return customer_id.encode()


def seen_key(customer_id: str, day: int) -> bytes:
    return customer_id.encode() + SEEN_SEP + str(day).encode()


def encode_ids(ids: set[str]) -> bytes:
    return _ids_encoder.encode(sorted(ids))


def decode_ids(raw: bytes | None) -> set[str]:
    return set(_ids_decoder.decode(raw)) if raw else set()


class KeyState(Protocol):
    """Keyed bytes, written in the partition of the record (``token``) that changed them."""

    def get(self, key: bytes, token: Any = None) -> bytes | None: ...

    def put(self, key: bytes, value: bytes, token: Any) -> None: ...

    def delete(self, key: bytes, token: Any) -> None: ...


class MappingState:
    """``KeyState`` over a plain mapping (unit tests, in-process use)."""

    def __init__(self, data: MutableMapping[bytes, bytes]) -> None:
        self.data = data

    def get(self, key: bytes, token: Any = None) -> bytes | None:
        return self.data.get(key)

    def put(self, key: bytes, value: bytes, token: Any) -> None:
        self.data[key] = value

    def delete(self, key: bytes, token: Any) -> None:
        self.data.pop(key, None)


class TableState:
    """``KeyState`` on a Faust table: local store write plus a changelog record of ours.

    ``bind(token)`` makes the token's Kafka message the current event, which is how
    Faust's RocksDB store picks the partition database of a write.
    """

    def __init__(
        self,
        store: Callable[[], MutableMapping[bytes, bytes]],
        changelog_topic: str,
        changelog: Outputs,
        bind: Callable[[Any], None],
    ) -> None:
        self._store, self.topic, self.changelog, self.bind = store, changelog_topic, changelog, bind

    @property
    def store(self) -> MutableMapping[bytes, bytes]:
        return self._store()  # Faust creates a table's store lazily, once the app is set up

    def _db(self, token: Any) -> Any:
        """RocksDB of the token's partition, or None for stores without one (memory://)."""
        store: Any = self.store
        if token is None or not hasattr(store, "_db_for_partition"):
            return None
        return store._db_for_partition(token.partition)

    def get(self, key: bytes, token: Any = None) -> bytes | None:
        # Straight to the partition's RocksDB when the record says which one: Faust's
        # generic lookup probes every partition and raises KeyError for a miss.
        db = self._db(token)
        if db is not None:
            value: bytes | None = db.get(key)
            return value
        return self.store.get(key)

    def put(self, key: bytes, value: bytes, token: Any) -> None:
        db = self._db(token)
        if db is not None:
            db.put(key, value)
        else:
            self.bind(token)
            self.store[key] = value
        self.changelog.send(self.topic, key, value, None, token.partition)

    def delete(self, key: bytes, token: Any) -> None:
        db = self._db(token)
        if db is not None:
            db.delete(key)
        else:
            self.bind(token)
            with contextlib.suppress(KeyError):
                del self.store[key]
        self.changelog.send(self.topic, key, None, None, token.partition)
