"""The conformance table's recorder and renderer (tests/conformance.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import conformance


def test_observations_render_as_a_table_per_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(conformance, "DIR", tmp_path)
    monkeypatch.setattr(conformance, "_started", set())
    (tmp_path / "sdk-b.jsonl").write_text(
        '{"sdk": "sdk-b", "call": "x", "field": "y", "ok": true}\n'
    )
    conformance.record("sdk-b", "track", "event", True)  # a session starts its SDK afresh
    conformance.record("sdk-b", "track", "properties", True)
    conformance.record("sdk-b", "track", "properties", False)  # any failure is a failure
    conformance.record("sdk-a", "identify", "traits.email", True)
    conformance.record("sdk-a", "track", "event", True)
    conformance.record("sdk-a", "track", "profile: traits", False)

    doc = conformance.render(conformance.load(tmp_path))

    assert doc.index("## identify") < doc.index("## track")
    assert "## x" not in doc
    track = doc[doc.index("## track") :]
    assert "| field | `sdk-a` | `sdk-b` |" in track
    assert "| event | ✓ | ✓ |" in track
    assert "| properties |  | ✗ |" in track  # sdk-a did not send it: blank
    assert track.index("| properties |") < track.index("| profile: traits | ✗ |  |")
    assert "python -m tests.conformance" in doc
