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
* ``{t}`` -- the shared event-time clock of segment timers.

Per-event markers (the customer an event was assigned to) are not one key per event: a
key costs ~190 bytes of Redis memory, the event id ~12 inside a small hash. They are
fields (a 12-byte digest of the event id, see :class:`MarkerWindow`) of hashes per time
generation and shard; a generation's hashes expire together, so the
markers' memory is bounded by rate x window (README, "Redis memory").

  {g}:id:<kind>:<value>       -> customer id owning an identifier (identity graph)
  {g}:cust:<id>:ids           -> set of "<kind>\\x1f<value>" of a customer
  {g}:cust:<id>:merged_into   -> survivor of an absorbed customer
  {g}:erased:<id>             -> set by `crm forget`: that id is never reused
  {g}:evt:<start>:<shard>     -> hash: event id digest -> customer it was assigned to
  {g}:evtm:<event id>         -> customers that event's identity decision absorbed (rare)
  {p<b>}:profile:<id>         -> hash: v, e, json, s, m, t (see sinks/redis_profiles.py)
  {p<b>}:segment:<name>       -> sorted set of bucket b's members (score: time entered)
  {p<b>}:segments:due         -> next due time of bucket b's customers' segment timers
  {t}:segments:clock          -> the shared event-time clock
  (``<start>``: unix second the generation began; markers expire with their generation)
"""

from __future__ import annotations

import hashlib
import math
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

    @property
    def event_markers_head(self) -> str:
        """``event_markers(start, shard)`` is this + ``<start>:<shard>`` (see LUA_MARKERS)."""
        return f"{self.graph}evt:"

    def event_markers(self, start: int, shard: int) -> str:
        """Hash of the identity stage's event assignments of one generation and shard."""
        return f"{self.event_markers_head}{start}:{shard}"

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


# Scripts that look markers up name the hashes themselves from fragments (one declared key
# routes the call to the slot): ARGV[1] the head (``event_markers_head``...), ARGV[2] the
# number of generations, then their starts, newest first; a hash is head .. start .. ':'
# .. shard. ``marker_hashes`` returns the hashes' names without the shard, and the index of
# the first argument after them. An event's marker argument (``MarkerWindow.marker_arg``)
# is its 12-byte field followed by its shard in digits.
LUA_MARKERS = """
local function marker_hashes()
  local n, hashes = tonumber(ARGV[2]), {}
  for j = 1, n do hashes[j] = ARGV[1] .. ARGV[2 + j] .. ':' end
  return hashes, 3 + n
end
local function split_marker(arg)
  return string.sub(arg, 1, 12), string.sub(arg, 13)
end
local function find_marker(hashes, arg)
  local field, shard = split_marker(arg)
  for j = 1, #hashes do
    local value = redis.call('HGET', hashes[j] .. shard, field)
    if value then return value end
  end
  return false
end
"""


@dataclass(frozen=True)
class MarkerWindow:
    """Time generations of per-event markers: remembered at least ``window_s``.

    A marker is a field of the hash of its generation (``window_s / GENERATIONS`` seconds
    of processing time) and shard; every generation's hash expires ``window_s`` after the
    generation ends, so a marker lives between ``window_s`` and ``window_s * 5/4``, and a
    lookup reads the current generation and the ``GENERATIONS`` before it. ``rate`` (events
    per second) sizes the shards so a hash holds about ``PER_HASH`` markers: Redis keeps a
    hash of up to 128 short fields (``hash-max-listpack-entries``) as one compact listpack,
    about 30 bytes a marker instead of ~190 for a key with a TTL.
    """

    window_s: int
    rate: int = 1000
    GENERATIONS = 4
    PER_HASH = 64
    FIELD_BYTES = 12  # of the event id's digest: 96 bits (plus the shard) never collide

    def __post_init__(self) -> None:
        if self.window_s < self.GENERATIONS or self.rate < 1:
            raise ValueError(f"marker window {self.window_s} s or rate {self.rate}/s too small")

    @property
    def generation_s(self) -> int:
        return math.ceil(self.window_s / self.GENERATIONS)

    def shards(self, parts: int = 1) -> int:
        """Hashes per generation (split over ``parts`` cluster slots) at ``rate``."""
        return max(1, math.ceil(self.rate * self.generation_s / self.PER_HASH / parts))

    def starts(self, now: float) -> list[int]:
        """Start of the current generation (where markers are written), then older ones."""
        g = self.generation_s
        current = int(now // g) * g
        return [current - i * g for i in range(self.GENERATIONS + 1)]

    def hashes(self, head: str, now: float) -> list[str | bytes | int]:
        """The ``LUA_MARKERS`` arguments naming the live generations' hashes at ``now``."""
        starts = self.starts(now)
        return [head, len(starts), *starts]

    def expire_at(self, start: int) -> int:
        """Unix second a generation's hashes expire: ``window_s`` after the generation ends."""
        return start + self.generation_s + self.window_s

    def marker(self, event_id: str, shards: int) -> tuple[bytes, int]:
        """The field naming ``event_id`` in a marker hash, and the shard of that hash."""
        d = hashlib.blake2b(event_id.encode(), digest_size=16).digest()
        return d[: self.FIELD_BYTES], int.from_bytes(d[self.FIELD_BYTES :], "big") % shards

    def marker_arg(self, event_id: str, shards: int) -> bytes:
        """Field and shard in one script argument (``LUA_MARKERS``' ``split_marker``)."""
        field, shard = self.marker(event_id, shards)
        return field + str(shard).encode()


def pack_customer(customer_id: str) -> bytes:
    """A customer id as a marker value: ``c_`` + 20 hex digits in 10 bytes, others as text."""
    if len(customer_id) == 22 and customer_id.startswith("c_"):
        try:
            raw = bytes.fromhex(customer_id[2:])
        except ValueError:
            raw = b""
        if raw.hex() == customer_id[2:] and raw[:1] != b"=":  # lower case, no blanks
            return raw
    return b"=" + customer_id.encode()


def unpack_customer(value: bytes) -> str:
    return value[1:].decode() if value[:1] == b"=" else "c_" + value.hex()
