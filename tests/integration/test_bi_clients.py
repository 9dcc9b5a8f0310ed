"""Real ClickHouse clients against the embedded store's endpoint, as a BI tool would use them.

One real sink process on chdb, serving ClickHouse's HTTP interface with a configured
user and loopback trust off (so credentials are required even here). Its tables are
fed through Kafka like in production, then read by clickhouse-connect (queries,
``query_df``, a streamed large result, an insert refused), Superset's SQLAlchemy dialect
(``clickhousedb://``: table reflection and a dashboard query) and the ClickHouse JDBC
driver that DBeaver, Metabase and Tableau use, running every shipped query.
"""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import clickhouse_connect
import httpx
import lz4.frame
import pytest
import sqlalchemy as sa
from clickhouse_connect.driver.exceptions import DatabaseError
from pydantic import SecretStr

from pipeline.cli.processes import crm_process
from pipeline.config import REPO_ROOT, Settings
from pipeline.events import LineItem, Page, PosTransaction
from pipeline.kafka.producer import ConfirmedProducer, Record
from pipeline.kafka.topics import ensure_topics
from pipeline.sinks.clickhouse.access import query
from pipeline.sinks.clickhouse.client import QUERIES
from pipeline.wire.records import RoutedEvent, encoder
from tests.integration.conftest import free_port, wait_for

USER, PASSWORD = "bi", "bi-secret"
JDBC_DIR = REPO_ROOT / "tests" / "bi" / "jdbc"
CUSTOMERS = 5


@pytest.fixture(scope="module")
def bi_sink(
    services: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Settings]:
    """A sink owning a fresh embedded store with events of a few customers in it."""
    tmp = tmp_path_factory.mktemp("bi")
    s = Settings(
        topic_prefix=f"it{uuid.uuid4().hex[:8]}.",
        topic_partitions=3,
        sql_port=free_port(),
        clickhouse_url=f"chdb://{tmp / 'ch'}",
        sql_users=SecretStr(f"{USER}:{PASSWORD}"),
        sql_loopback_trust=False,
    )
    s = s.model_copy(update={"redis_prefix": s.topic_prefix})
    ensure_topics(s)
    env = {
        "CRM_TOPIC_PREFIX": s.topic_prefix,
        "CRM_REDIS_PREFIX": s.redis_prefix,
        "CRM_CLICKHOUSE_URL": s.clickhouse_url,
        "CRM_SQL_PORT": str(s.sql_port),
        "CRM_SQL_USERS": f"{USER}:{PASSWORD}",
        "CRM_SQL_LOOPBACK_TRUST": "false",
        "CRM_TOPIC_PARTITIONS": "3",
        "CRM_CLICKHOUSE_BATCH_MS": "200",
    }
    with crm_process(["sink", "clickhouse"], None, tmp / "sink.log", env=env):
        now = datetime.now(UTC)
        records = []
        for i in range(CUSTOMERS):
            customer = f"c{i}"
            events: list[Any] = [
                Page(
                    message_id=f"page-{i}",
                    anonymous_id=f"a{i}",
                    timestamp=now,
                    context={"campaign": {"name": "spring", "source": "newsletter"}},
                ),
                PosTransaction(
                    message_id=f"pos-{i}",
                    user_id=customer,
                    timestamp=now,
                    transaction_id=f"t{i}",
                    store_id="s1",
                    items=[LineItem(sku="sku1", category="shoes", price=10 + i)],
                    total=10 + i,
                ),
            ]
            for event in events:
                routed = encoder.encode(RoutedEvent(customer_id=customer, event=event))
                records.append(Record(s.topic("events.by_customer"), customer.encode(), routed))
        producer = ConfirmedProducer(s.kafka_bootstrap)
        producer.send_sync(records)
        producer.close()
        wait_for(
            lambda: _count(s),
            lambda n: n == 2 * CUSTOMERS,
            what="the sink's rows through its endpoint",
        )
        yield s


def _count(s: Settings) -> int | None:
    try:
        return int(query(s, "SELECT count() FROM events", open_store=False)["rows"][0][0])
    except Exception:
        return None


def _client(s: Settings, **kwargs: Any) -> Any:
    args: dict[str, Any] = {"username": USER, "password": PASSWORD, **kwargs}
    return clickhouse_connect.get_client(host="127.0.0.1", port=s.sql_port, **args)


def test_clickhouse_connect(bi_sink: Settings) -> None:
    client = _client(bi_sink)
    assert client.server_version.count(".") >= 2
    assert client.compression.startswith("lz4")  # it asks for LZ4 first, as with a server
    assert client.query("SELECT count() FROM events").result_rows == [(2 * CUSTOMERS,)]
    typed = client.query(
        "SELECT count() FROM events WHERE type = {t:String}", parameters={"t": "page"}
    )
    assert typed.result_rows == [(CUSTOMERS,)]
    assert client.command("SELECT uniqExact(customer_id) FROM events") == CUSTOMERS
    df = client.query_df("SELECT customer_id, revenue FROM events WHERE revenue > 0")
    assert sorted(df["customer_id"]) == [f"c{i}" for i in range(CUSTOMERS)]
    assert float(df["revenue"].sum()) == sum(10 + i for i in range(CUSTOMERS))
    # a large result streams block by block (Native, LZ4) rather than being built whole
    with client.query_row_block_stream("SELECT number FROM numbers(600000)") as stream:
        assert sum(len(block) for block in stream) == 600000
    csv = client.raw_query("SELECT 1 AS a, 'x' AS b", fmt="CSVWithNames")
    assert csv == b'"a","b"\n1,"x"\n'  # the engine's bytes, as formatted by it
    with pytest.raises(DatabaseError, match="readonly") as refused:
        client.insert("events", [["x", "c9"]], column_names=["event_id", "customer_id"])
    assert refused.value.code == 164
    assert client.command("SELECT count() FROM events") == 2 * CUSTOMERS


def test_credentials_are_required(bi_sink: Settings) -> None:
    for password in ("wrong", ""):
        with pytest.raises(DatabaseError, match="Authentication failed") as denied:
            _client(bi_sink, password=password)
        assert denied.value.code == 516
    resp = httpx.get(f"http://127.0.0.1:{bi_sink.sql_port}/", params={"query": "SELECT 1"})
    assert resp.status_code == 401 and resp.headers["X-ClickHouse-Exception-Code"] == "516"
    ping = httpx.get(f"http://127.0.0.1:{bi_sink.sql_port}/ping")
    assert ping.status_code == 200 and ping.text == "Ok.\n"  # health checks need no user


def test_superset_sqlalchemy_dialect(bi_sink: Settings) -> None:
    engine = sa.create_engine(
        f"clickhousedb://{USER}:{PASSWORD}@127.0.0.1:{bi_sink.sql_port}/default"
    )
    inspector = sa.inspect(engine)
    tables = inspector.get_table_names()
    assert {"events", "daily_channel_campaign", "profile_snapshots"} <= set(tables)
    columns = {c["name"] for c in inspector.get_columns("events")}
    assert {"event_id", "customer_id", "event_time", "revenue"} <= columns
    events = sa.Table("events", sa.MetaData(), autoload_with=engine)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(events)).scalar() == 10
        dashboard = (QUERIES / "traffic_by_channel_campaign.sql").read_text()
        rows = conn.execute(sa.text(dashboard)).mappings().all()
    assert rows and sum(r["event_count"] for r in rows) == 2 * CUSTOMERS
    assert any(r["campaign"] == "spring" for r in rows)
    engine.dispose()


def test_jdbc_driver_runs_every_shipped_query(bi_sink: Settings, tmp_path: Path) -> None:
    classpath = JDBC_DIR / "classpath.txt"
    java = shutil.which("java")
    if java is None or not classpath.exists():
        pytest.fail(f"java or {classpath} is missing: run `make test-deps` (infra/jdbc-deps.sh)")
    files = sorted(QUERIES.glob("*.sql"))
    done = subprocess.run(
        [
            java,
            "-cp",
            classpath.read_text().strip(),
            str(JDBC_DIR / "RunQueries.java"),
            f"jdbc:clickhouse://127.0.0.1:{bi_sink.sql_port}/default",
            *map(str, files),
        ],
        env={**os.environ, "CH_USER": USER, "CH_PASSWORD": PASSWORD},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    results = {ln.split()[1]: ln for ln in lines if ln.startswith(("ok ", "error "))}
    assert set(results) == {f.name for f in files}
    assert all(line.startswith("ok ") for line in results.values()), results
    assert "rows=0" not in results["traffic_by_channel_campaign.sql"]
    assert "rows=0" not in results["revenue_by_store_category.sql"]
    refused = next(ln for ln in lines if ln.startswith("insert "))
    assert refused.startswith("insert refused") and "Code: 164" in refused


def test_the_http_interface_as_clickhouse_serves_it(bi_sink: Settings) -> None:
    base = f"http://127.0.0.1:{bi_sink.sql_port}/"
    with httpx.Client(base_url=base, auth=(USER, PASSWORD)) as http:
        assert http.get("/").text == "Ok.\n"
        # query parameter and body are concatenated; FORMAT in the query wins
        resp = http.post(
            "/", params={"query": "SELECT count() AS n"}, content="FROM events FORMAT JSONEachRow"
        )
        assert resp.status_code == 200, resp.text
        assert resp.text == f'{{"n":{2 * CUSTOMERS}}}\n'
        assert resp.headers["X-ClickHouse-Format"] == "JSONEachRow"
        assert resp.headers["X-ClickHouse-Timezone"]
        assert resp.headers["X-ClickHouse-Server-Display-Name"]
        assert "read_rows" in resp.headers["X-ClickHouse-Summary"]
        # default_format, database, query parameters, query_id echoed
        resp = http.get(
            "/",
            params={
                "query": "SELECT {n:UInt8} + 1 AS x, currentDatabase() AS db",
                "param_n": "41",
                "database": "system",
                "default_format": "TSVWithNames",
                "query_id": "q-1",
            },
        )
        assert resp.text == "x\tdb\n42\tsystem\n"
        assert resp.headers["X-ClickHouse-Query-Id"] == "q-1"
        # compression only when asked, gzip as curl asks for it
        resp = http.get(
            "/",
            params={"query": "SELECT number FROM numbers(1000)", "enable_http_compression": "1"},
            headers={"Accept-Encoding": "gzip"},
        )
        assert resp.headers["Content-Encoding"] == "gzip"
        assert resp.text.splitlines()[-1] == "999"  # httpx decoded it
        lz4_body = http.get(
            "/", params={"query": "SELECT 1 FORMAT Native"}, headers={"Accept-Encoding": "lz4"}
        )
        assert lz4_body.headers["Content-Encoding"] == "lz4"  # what clickhouse-connect reads
        native = lz4.frame.decompress(lz4_body.content)
        assert native.startswith(b"\x01\x01\x011\x05UInt8")
        raw = http.get("/", params={"query": "SELECT 1"}, headers={"Accept-Encoding": "identity"})
        assert "Content-Encoding" not in raw.headers and raw.text == "1\n"
        # errors in ClickHouse's shape, with its code and an HTTP status by code
        bad = http.get("/", params={"query": "SELEC 1"})
        assert bad.status_code == 400 and bad.headers["X-ClickHouse-Exception-Code"] == "62"
        assert bad.text.startswith("Code: 62. DB::Exception:")
        missing = http.get("/", params={"query": "SELECT * FROM nope"})
        assert missing.status_code == 404 and "UNKNOWN_TABLE" in missing.text
        # a client may lower a limit, never lift one (wait_end_of_query: the error comes
        # before the response starts, so it gets its status)
        lifted = http.get("/", params={"query": "SELECT 1", "readonly": "0"})
        assert lifted.status_code == 403 and "READONLY" in lifted.text
        for rows, limit in ((2_000_000, "9000000"), (20, "10")):
            over = http.get(
                "/",
                params={
                    "query": f"SELECT number FROM numbers({rows})",
                    "max_result_rows": limit,
                    "wait_end_of_query": "1",
                },
            )
            assert over.status_code == 500 and "TOO_MANY_ROWS" in over.text
        # a failure after the stream started is framed as ClickHouse 25.11+ does
        late = http.get(
            "/",
            params={"query": "SELECT number FROM numbers(2000000)"},  # over max_result_rows
            headers={"Accept-Encoding": "identity"},
        )
        tag = late.headers["X-ClickHouse-Exception-Tag"]
        assert f"__exception__\r\n{tag}\r\n" in late.text and "Code: 396." in late.text


def test_gzip_body_of_a_query(bi_sink: Settings) -> None:
    resp = httpx.post(
        f"http://127.0.0.1:{bi_sink.sql_port}/",
        content=gzip.compress(b"SELECT 6 * 7"),
        headers={"Content-Encoding": "gzip"},
        auth=(USER, PASSWORD),
    )
    assert resp.text == "42\n"
