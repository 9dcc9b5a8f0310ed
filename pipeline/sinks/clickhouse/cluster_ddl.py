"""The migrations rewritten for a ClickHouse cluster: replicated local tables on every
shard, Distributed tables under the original names for reading.

``crm migrate --cluster NAME --print`` prints the statements; nothing here runs them (no
ClickHouse cluster can run on the test machines), so they are unit-tested as text and
parsed by ClickHouse's own parser (``formatQuery``) on the embedded engine.

The rewrite, statement by statement:

* ``CREATE TABLE t (...) ENGINE = XMergeTree(args) ...`` becomes ``t_local`` with
  ``ReplicatedXMergeTree('/clickhouse/tables/{shard}/{database}/t_local', '{replica}', args)``
  ``ON CLUSTER``, plus ``t`` as ``Distributed(cluster, currentDatabase(), t_local, key)``;
  ``non_replicated_deduplication_window`` becomes ``replicated_deduplication_window``;
* a materialized view reads and writes the *local* tables, so each shard aggregates the
  rows inserted into it (the daily aggregates' states merge across shards when read);
* a plain view reads the Distributed tables, with ``GLOBAL`` joins (a subquery over a
  Distributed table must run once, not on every shard);
* ``ALTER TABLE t ADD COLUMN`` alters both ``t_local`` and ``t``.

Deduplication across replicas: Replicated tables keep insert tokens in Keeper per shard,
so the sink's ``insert_deduplication_token`` (topic:partition:offset range) stays valid
on every replica of a shard as long as one Kafka partition's rows always go to the same
shard. The sink must therefore insert into ``t_local`` of shard ``partition % shards``
(rows of ``events.by_customer`` are keyed by customer, so a customer lives on one shard),
not through the Distributed table, whose asynchronous forwarding re-blocks rows.
"""

from __future__ import annotations

import re

from pipeline.sinks.clickhouse.client import statements

_CREATE_TABLE = re.compile(
    r"CREATE TABLE IF NOT EXISTS (?P<name>\w+)\s*(?P<columns>\(.*\))\s*"
    r"ENGINE = (?P<engine>\w*MergeTree)(?:\((?P<args>[^)]*)\))?(?P<rest>.*)",
    re.S,
)
_CREATE_MV = re.compile(
    r"CREATE MATERIALIZED VIEW IF NOT EXISTS (?P<name>\w+) TO (?P<target>\w+) AS(?P<select>.*)",
    re.S,
)
_CREATE_VIEW = re.compile(r"CREATE VIEW IF NOT EXISTS (?P<name>\w+) AS(?P<select>.*)", re.S)
_ALTER = re.compile(r"ALTER TABLE (?P<name>\w+) (?P<rest>.*)", re.S)


def _sharding_key(columns: str) -> str:
    return "cityHash64(customer_id)" if re.search(r"\bcustomer_id\b", columns) else "rand()"


def _from_local(select: str, tables: set[str]) -> str:
    """Table names after FROM/JOIN replaced by their local tables."""
    return re.sub(
        r"\b(FROM|JOIN)\s+(\w+)\b",
        lambda m: f"{m.group(1)} {m.group(2)}_local" if m.group(2) in tables else m.group(0),
        select,
    )


def cluster_statements(sql: str, cluster: str, tables: set[str] | None = None) -> list[str]:
    """One migration file's statements for ``cluster``; ``tables``: names seen so far
    (updated), so later files' views know which names are tables."""
    tables = set() if tables is None else tables
    on = f"ON CLUSTER '{cluster}'"
    out: list[str] = []
    for stmt in statements(sql):
        if m := _CREATE_TABLE.fullmatch(stmt):
            name, engine, args = m["name"], m["engine"], (m["args"] or "").strip()
            local = f"{name}_local"
            path = f"'/clickhouse/tables/{{shard}}/{{database}}/{local}', '{{replica}}'"
            replicated = f"Replicated{engine}({path}{', ' + args if args else ''})"
            rest = m["rest"].replace(
                "non_replicated_deduplication_window", "replicated_deduplication_window"
            )
            out.append(
                f"CREATE TABLE IF NOT EXISTS {local} {on}\n{m['columns']}\n"
                f"ENGINE = {replicated}{rest}"
            )
            out.append(
                f"CREATE TABLE IF NOT EXISTS {name} {on} AS {local}\n"
                f"ENGINE = Distributed('{cluster}', currentDatabase(), '{local}', "
                f"{_sharding_key(m['columns'])})"
            )
            tables.add(name)
        elif m := _CREATE_MV.fullmatch(stmt):
            target = f"{m['target']}_local" if m["target"] in tables else m["target"]
            out.append(
                f"CREATE MATERIALIZED VIEW IF NOT EXISTS {m['name']} {on} TO {target} AS"
                f"{_from_local(m['select'], tables)}"
            )
        elif m := _CREATE_VIEW.fullmatch(stmt):
            select = re.sub(
                r"\b(LEFT |INNER )?JOIN\b", lambda j: f"GLOBAL {j.group(0)}", m["select"]
            )
            out.append(f"CREATE VIEW IF NOT EXISTS {m['name']} {on} AS{select}")
        elif m := _ALTER.fullmatch(stmt):
            names = [f"{m['name']}_local", m["name"]] if m["name"] in tables else [m["name"]]
            out.extend(f"ALTER TABLE {n} {on} {m['rest']}" for n in names)
        else:
            raise ValueError(f"no cluster form for statement: {stmt[:120]}")
    return out
