"""Reading the YAML rule files under ``config/``: the I/O half of the rule parsers.

The parsers (``parse_*`` in ``pipeline.transforms``) are pure and take text; this
module reads the files and names them in every error, so a ConfigError (or
RulesError) says which file and which line.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.transforms.audience import AudienceRules
from pipeline.transforms.conditions import ConfigError
from pipeline.transforms.identity import Rules, RulesError, parse_identity_rules
from pipeline.transforms.loyalty import LoyaltyConfig, parse_loyalty
from pipeline.transforms.personalize import PersonalizationConfig, parse_personalization
from pipeline.transforms.segments import SegmentConfig, parse_segments


def read_text(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None


def load_loyalty(path: Path) -> LoyaltyConfig:
    """``config/loyalty.yaml``: accrual, tiers and the ladder."""
    return parse_loyalty(read_text(path), str(path))


def load_segments(path: Path) -> SegmentConfig:
    """``config/segments.yaml``: segment definitions."""
    return parse_segments(read_text(path), str(path))


def load_personalization(path: Path) -> PersonalizationConfig:
    """``config/personalization.yaml``: slots and marketer rules."""
    return parse_personalization(read_text(path), str(path))


def load_identity_rules(path: Path, salt: str = "", hash_pii: bool = True) -> Rules:
    """``config/identity.yaml``: priorities, limits, blocked and reassignable identifiers
    (blocked emails also as the collector hashes them with ``salt``)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise RulesError(f"{path}: cannot read: {exc.strerror}") from None
    return parse_identity_rules(text, str(path)).as_stored(salt, hash_pii)


def load_audience(loyalty: Path, segments: Path) -> AudienceRules:
    """Both audience files, validated; a ConfigError names the file and line."""
    return AudienceRules(loyalty=load_loyalty(loyalty), segments=load_segments(segments))
