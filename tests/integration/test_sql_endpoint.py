"""The SQL endpoint of the embedded store is read-only by the engine, not by a first-word check.

(The endpoint speaks ClickHouse's HTTP interface; ``access.query`` reaches it with
clickhouse-connect, as ``crm sql`` does. tests/integration/test_bi_clients.py drives it
with BI clients.)

Before: ``SELECT 1; DROP TABLE ...`` dropped a table, ``INTO OUTFILE`` wrote files and
``file('/etc/...')`` read them. Each is tried here against a running sink's endpoint;
the store and the sink's own (writable) session must come out unchanged.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline.cli.processes import crm_process
from pipeline.events import Page
from pipeline.kafka.producer import ConfirmedProducer, Record
from pipeline.sinks.clickhouse.access import query
from pipeline.wire.records import RoutedEvent, encoder
from tests.integration.conftest import wait_for

REFUSED = [
    ("SELECT 1; DROP TABLE events", "Multi-statements"),
    ("DROP TABLE events", "readonly"),
    ("INSERT INTO events (event_id) VALUES ('x')", "readonly"),
    ("ALTER TABLE schema_migrations DELETE WHERE 1", None),  # chdb's error text varies
    ("CREATE TABLE x (a Int8) ENGINE = Memory", "readonly"),
    ("SELECT * FROM file('/etc/passwd', 'LineAsString')", "readonly"),
    ("SELECT * FROM url('http://127.0.0.1:9/x', 'CSV', 'a String')", "readonly"),
    ("SELECT 1 SETTINGS readonly = 0", "readonly"),
    ("SET readonly = 0", "readonly"),
    # what chdb's readonly=1 lets through (measured), refused by the statement vetting
    ("SELECT file('/etc/hostname')", "readonly"),
    ("SELECT * FROM s3('http://127.0.0.1:9/b/x', 'CSV', 'a String')", "readonly"),
    ("DESCRIBE TABLE file('/etc/passwd', 'LineAsString')", "readonly"),
    ("SYSTEM STOP MERGES", "readonly"),
    ("KILL QUERY WHERE 1", "readonly"),
]


def test_only_reads_get_through_and_the_sink_keeps_writing(ch_settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    s, env = ch_settings
    with crm_process(["sink", "clickhouse"], None, tmp_path / "sink.log", env=env):
        tables = wait_for(
            lambda: _try(s, "SHOW TABLES"), lambda r: r is not None, what="the SQL endpoint"
        )
        assert ["events"] in tables["rows"]
        migrations = query(s, "SELECT count() FROM schema_migrations", open_store=False)
        assert migrations["rows"][0][0] > 0
        for sql, why in REFUSED:
            with pytest.raises(ValueError, match=why):
                query(s, sql, open_store=False)
        outfile = tmp_path / "leak.csv"
        with pytest.raises(ValueError, match="INTO OUTFILE"):
            query(s, f"SELECT 1 INTO OUTFILE '{outfile}'", open_store=False)
        assert not outfile.exists()
        with pytest.raises(ValueError, match="rows"):  # per-query limits
            query(s, "SELECT number FROM system.numbers LIMIT 2000000", open_store=False)
        after = query(s, "SHOW TABLES", open_store=False)
        assert after == tables  # nothing dropped, nothing created
        # the sink's own session is still writable after all those refusals
        event = Page(message_id="after-refusals", anonymous_id="a", timestamp=datetime.now(UTC))
        routed = encoder.encode(RoutedEvent(customer_id="c1", event=event))
        producer = ConfirmedProducer(s.kafka_bootstrap)
        producer.send_sync([Record(s.topic("events.by_customer"), b"c1", routed)])
        producer.close()
        wait_for(
            lambda: _try(s, "SELECT count() FROM events WHERE event_id = 'after-refusals'"),
            lambda r: r is not None and r["rows"][0][0] == 1,
            what="an event inserted by the sink",
        )
        # a mutation would have run by now: the refused ALTER deleted nothing
        assert query(s, "SELECT count() FROM schema_migrations", open_store=False) == migrations


def _try(s, sql: str):  # type: ignore[no-untyped-def]
    try:
        return query(s, sql, open_store=False)
    except Exception:
        return None
