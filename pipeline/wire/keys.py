"""Every Redis key the pipeline reads or writes: the one owner of their names.

Workers, sinks, the API, the backfill, the CLI and the benchmarks share these keys, so a
name changed here changes everywhere; Lua scripts receive the fragments they need as
arguments instead of spelling names themselves. All keys start with ``CRM_REDIS_PREFIX``.

  id:<kind>:<value>          -> customer id owning an identifier (identity graph)
  cust:<id>:ids              -> set of "<kind>\\x1f<value>" of a customer
  cust:<id>:merged_into      -> survivor of an absorbed customer
  erased:<id>                -> set by `crm forget`: that id is never reused
  evt:<event id>             -> customer an event was assigned to (dedupe window TTL)
  evtm:<event id>            -> customers that event's identity decision absorbed
  profile:<id>               -> hash: v, e, json, s, m, t (see sinks/redis_profiles.py)
  segment:<name>             -> sorted set of members (score: event time entered)
  segments:due / segments:clock -> segment timers and the shared event-time clock
  chseen:<event id>          -> ClickHouse sink's duplicate marker
"""

from __future__ import annotations

from dataclasses import dataclass

SEP = "\x1f"  # between an identifier's kind and value inside a member set
FORGOTTEN = "(forgotten)"  # the ``m`` field of an erased customer's profile tombstone


@dataclass(frozen=True)
class RedisKeys:
    prefix: str

    def identifier(self, kind: str, value: str) -> str:
        return f"{self.prefix}id:{kind}:{value}"

    def identifiers(self, kind: str = "*") -> str:
        """SCAN pattern of identifier keys (of one kind)."""
        return f"{self.prefix}id:{kind}:*"

    @property
    def customer_prefix(self) -> str:
        return f"{self.prefix}cust:"

    def members(self, customer_id: str) -> str:
        return f"{self.customer_prefix}{customer_id}:ids"

    MERGED_SUFFIX = ":merged_into"

    def merged_into(self, customer_id: str) -> str:
        return f"{self.customer_prefix}{customer_id}{self.MERGED_SUFFIX}"

    def all_merged(self) -> str:
        """SCAN pattern of merge pointers."""
        return self.merged_into("*")

    def customer_of_merged(self, key: str) -> str:
        return key.removeprefix(self.customer_prefix).removesuffix(self.MERGED_SUFFIX)

    def erased(self, customer_id: str) -> str:
        return f"{self.prefix}erased:{customer_id}"

    def event(self, event_id: str) -> str:
        return f"{self.prefix}evt:{event_id}"

    def event_merges(self, event_id: str) -> str:
        return f"{self.prefix}evtm:{event_id}"

    @property
    def profile_prefix(self) -> str:
        return f"{self.prefix}profile:"

    def profile(self, customer_id: str) -> str:
        return f"{self.profile_prefix}{customer_id}"

    def profiles(self) -> str:
        """SCAN pattern of profile hashes."""
        return f"{self.profile_prefix}*"

    @property
    def segment_prefix(self) -> str:
        return f"{self.prefix}segment:"

    def segment(self, name: str) -> str:
        return f"{self.segment_prefix}{name}"

    @property
    def segments_due(self) -> str:
        return f"{self.prefix}segments:due"

    @property
    def segments_clock(self) -> str:
        return f"{self.prefix}segments:clock"

    def clickhouse_seen(self, event_id: str) -> str:
        return f"{self.prefix}chseen:{event_id}"
