"""Running a query from any process: through the store owner if one runs, else directly.

While a sink owns the embedded store, queries go to its ClickHouse HTTP endpoint with
clickhouse-connect, the same client a BI tool uses; without a sink the store is opened
here, in a session with the same limits, ``readonly=1`` and vetting as the endpoint's.
"""

from __future__ import annotations

import logging
import threading
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

from pipeline.config import Settings
from pipeline.sinks.clickhouse.client import connect
from pipeline.sinks.clickhouse.sql_safety import Limits, SqlRefused, vet_statement

_clients: dict[tuple[int, str], Client] = {}
_clients_lock = threading.Lock()


def _not_driver_noise(record: logging.LogRecord) -> bool:
    """clickhouse-connect logs a warning (with a traceback) for every refused connection
    before raising ``OperationalError``; the callers here handle that error (no sink
    running: open the store, or say so), so the warning only floods pollers' output."""
    return record.getMessage() != "Unexpected Http Driver Exception"


logging.getLogger("clickhouse_connect.driver._backend.http_sync").addFilter(_not_driver_noise)


def query(settings: Settings, sql: str, open_store: bool = True) -> dict[str, Any]:
    """Run SQL through the sink's endpoint, or open the embedded store if no sink runs.

    ``open_store=False`` never opens it: a poller (a test, a dashboard) must not take the
    store's lock while a sink is starting, or the sink could not open it. A refused or
    failed query raises ``ValueError`` with ClickHouse's message.
    """
    if settings.clickhouse_dsn.startswith("chdb://"):
        try:
            client = _endpoint_client(settings)
        except OperationalError:
            if not open_store:
                raise
            client = None  # no sink running: open the store ourselves
        if client is not None:
            try:
                return _rows(client, sql)
            except OperationalError as exc:
                if exc.code:
                    raise ValueError(str(exc)) from None
                _forget(settings)  # the sink went away
                if not open_store:
                    raise
            except DatabaseError as exc:
                raise ValueError(str(exc)) from None
    session = ReadOnlySql(settings.clickhouse_dsn, Limits.of(settings))
    try:
        return session.run(sql)
    finally:
        session.close()


def _endpoint_client(settings: Settings) -> Client:
    from pipeline.sinks.clickhouse.query_server import parse_users

    users = parse_users(settings.sql_users.get_secret_value())
    user, password = next(iter(users.items()), ("default", ""))
    key = (settings.sql_port, user)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = clickhouse_connect.get_client(
                host="127.0.0.1",
                port=settings.sql_port,
                username=user,
                password=password,
                autogenerate_session_id=False,
                connect_timeout=5,
                send_receive_timeout=settings.sql_max_execution_s + 30,
                query_retries=0,
            )
            _clients[key] = client
        return client


def _forget(settings: Settings) -> None:
    with _clients_lock:
        for key in [k for k in _clients if k[0] == settings.sql_port]:
            _clients.pop(key).close()


class ReadOnlySql:
    """The store opened in this process, one vetted statement at a time, read-only.

    A query that fails can leave the embedded engine's result stream half read (a result
    over ``max_result_rows``); the next query would then read its leftovers, so after any
    failure the session is replaced by a fresh one.
    """

    def __init__(self, dsn: str, limits: Limits) -> None:
        self.dsn, self.limits = dsn, limits
        self.client: Client | None = None

    def run(self, sql: str) -> dict[str, Any]:
        if self.client is None:
            self.client = connect(self.dsn, settings=self.limits.session())
        try:
            canonical = self.client.query(
                "SELECT formatQuery({q:String})", parameters={"q": sql}
            ).result_rows[0][0]
            vet_statement(str(canonical))
            return _rows(self.client, sql)
        except SqlRefused as exc:
            self.close()
            raise ValueError(str(exc)) from None
        except Exception:
            self.close()
            raise

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value


def _rows(client: Client, sql: str) -> dict[str, Any]:
    result = client.query(sql)
    return {
        "columns": list(result.column_names),
        "rows": [[_plain(v) for v in row] for row in result.result_rows],
    }
