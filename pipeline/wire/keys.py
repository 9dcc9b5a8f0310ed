"""Every Redis key the pipeline reads or writes: the one owner of their names.

Workers, sinks, the API, the backfill, the CLI and the benchmarks share these keys, so a
name changed here changes everywhere; Lua scripts receive the fragments they need as
arguments instead of spelling names themselves. All keys start with ``CRM_REDIS_PREFIX``.

Keys carry Redis Cluster hash tags (``{...}``), so every script and transaction touches
one slot and the same layout runs on one Redis or on a Redis Cluster:

* ``{g}`` -- the identity graph. A decision reads and writes identifiers and member sets
  of several customers atomically, so the whole graph lives in one slot (one shard of a
  cluster). Its load is a few small commands per event with a new identifier;
* ``{p<b>}`` -- profiles, segment sets and due timers of customer bucket ``b`` (16 buckets,
  from the customer id's last character, see :func:`bucket`): the profile script writes a
  profile and its segment memberships atomically, and these spread over the cluster;
* ``{t}`` -- the shared event-time clock of segment timers;
* ``{m<b>}`` -- the ClickHouse sink's duplicate markers, bucketed by event id.

  {g}:id:<kind>:<value>       -> customer id owning an identifier (identity graph)
  {g}:cust:<id>:ids           -> set of "<kind>\\x1f<value>" of a customer
  {g}:cust:<id>:merged_into   -> survivor of an absorbed customer
  {g}:erased:<id>             -> set by `crm forget`: that id is never reused
  {g}:evt:<event id>          -> customer an event was assigned to (dedupe window TTL)
  {g}:evtm:<event id>         -> customers that event's identity decision absorbed
  {p<b>}:profile:<id>         -> hash: v, e, json, s, m, t (see sinks/redis_profiles.py)
  {p<b>}:segment:<name>       -> sorted set of bucket b's members (score: time entered)
  {p<b>}:segments:due         -> next due time of bucket b's customers' segment timers
  {t}:segments:clock          -> the shared event-time clock
  {m<b>}:chseen:<event id>    -> ClickHouse sink's duplicate marker
"""

from __future__ import annotations

import string
from dataclasses import dataclass

SEP = "\x1f"  # between an identifier's kind and value inside a member set
FORGOTTEN = "(forgotten)"  # the ``m`` field of an erased customer's profile tombstone
BUCKETS = tuple(format(b, "x") for b in range(16))
_HEX = frozenset(string.hexdigits)

# The same function in Lua, for scripts that follow a customer id to its profile.
LUA_BUCKET = """
local function bucket(id)
  local n = tonumber(string.sub(id, -1), 16)
  if not n then n = string.byte(id, -1) % 16 end
  return string.format('%x', n)
end
"""


def bucket(customer_id: str) -> str:
    """Which of 16 buckets a customer's profile keys are in: the id's last hex digit.

    Customer ids end in a hash's hex digit, so buckets are even; any other last
    character goes by its last byte. ``LUA_BUCKET`` computes the same in scripts.
    """
    last = customer_id[-1:]
    if last in _HEX and last:
        return format(int(last, 16), "x")
    raw = customer_id.encode()
    return format(raw[-1] % 16 if raw else 0, "x")


@dataclass(frozen=True)
class RedisKeys:
    prefix: str

    # --- identity graph: one slot -------------------------------------------------

    @property
    def graph(self) -> str:
        return f"{self.prefix}{{g}}:"

    def identifier(self, kind: str, value: str) -> str:
        return f"{self.graph}id:{kind}:{value}"

    def identifiers(self, kind: str = "*") -> str:
        """SCAN pattern of identifier keys (of one kind)."""
        return f"{self.graph}id:{kind}:*"

    @property
    def customer_prefix(self) -> str:
        return f"{self.graph}cust:"

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
        return f"{self.graph}erased:{customer_id}"

    def event(self, event_id: str) -> str:
        return f"{self.graph}evt:{event_id}"

    def event_merges(self, event_id: str) -> str:
        return f"{self.graph}evtm:{event_id}"

    # --- profiles, segments, timers: 16 buckets ---------------------------------------

    def bucket_prefix(self, b: str) -> str:
        """Everything of bucket ``b`` starts with this (``{p<b>}`` is its hash tag)."""
        return f"{self.prefix}{{p{b}}}:"

    def profile(self, customer_id: str) -> str:
        head, tail = self.profile_parts()
        return f"{head}{bucket(customer_id)}{tail}{customer_id}"

    def profile_parts(self) -> tuple[str, str]:
        """A profile key is ``head + bucket + tail + customer id`` (for Lua scripts)."""
        return f"{self.prefix}{{p", "}:profile:"

    def profiles(self) -> str:
        """SCAN pattern of profile hashes (every bucket)."""
        return f"{self.prefix}{{p?}}:profile:*"

    def segments_prefix(self, b: str) -> str:
        """Bucket ``b``'s segment sets start with this; the profile script appends names."""
        return f"{self.bucket_prefix(b)}segment:"

    def segment(self, name: str, b: str) -> str:
        """Bucket ``b``'s members of a segment (a segment is the union over the buckets)."""
        return f"{self.segments_prefix(b)}{name}"

    def segment_of(self, name: str, customer_id: str) -> str:
        """The set that holds ``customer_id`` if it is a member of segment ``name``."""
        return self.segment(name, bucket(customer_id))

    def segments_due(self, b: str) -> str:
        return f"{self.bucket_prefix(b)}segments:due"

    @property
    def segments_clock(self) -> str:
        return f"{self.prefix}{{t}}:segments:clock"

    # --- ClickHouse sink ---------------------------------------------------------------

    def clickhouse_seen(self, event_id: str) -> str:
        return f"{self.prefix}{{m{bucket(event_id)}}}:chseen:{event_id}"
