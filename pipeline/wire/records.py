"""Records on ``events.by_customer`` (keyed by customer id) and on the merge log."""

from __future__ import annotations

import msgspec

from pipeline.events import Event
from pipeline.transforms.profile import Profile


class Routed(msgspec.Struct, tag_field="k", kw_only=True):
    customer_id: str


class RoutedEvent(Routed, tag="event", kw_only=True):
    """An event assigned to its customer by the identity stage.

    ``forwarded`` marks a copy redirected from an absorbed customer's partition;
    analytics sinks skip it (the original was already counted). ``repeat`` marks an
    event id the identity stage had already routed (a client's retry, a worker's
    replay after a crash, a second copy in one batch): an earlier record with this
    event id and customer may exist, so the ClickHouse sink looks before inserting.
    """

    event: Event
    forwarded: bool = False
    repeat: bool = False


class MergeCommand(Routed, tag="merge", kw_only=True):
    """Sent to the absorbed customer's partition: hand your profile to the survivor."""

    survivor: str
    merge_id: str


class Absorb(Routed, tag="absorb", kw_only=True):
    """Sent to the survivor's partition with the absorbed customer's profile."""

    absorbed: str
    merge_id: str
    profile: Profile


class Forget(Routed, tag="forget", kw_only=True):
    """Erase a customer's profile; the CLI has already removed the identity keys."""

    requested_at: str


class Tick(Routed, tag="tick", kw_only=True):
    """A segment timer fired: re-evaluate time-relative conditions at event time ``at``."""

    at: int


AnyRouted = RoutedEvent | MergeCommand | Absorb | Forget | Tick


class IdentityDecision(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One line of the merge log: what the identity stage decided and why."""

    action: str  # created | merged | moved | dropped
    customer_id: str
    event_id: str
    at: str
    absorbed: str | None = None
    identifier: list[str] | None = None
    previous: str | None = None
    reason: str | None = None


encoder = msgspec.json.Encoder()
routed_decoder = msgspec.json.Decoder(AnyRouted)
