"""The embedded store's ClickHouse HTTP endpoint without an engine: vetting and protocol."""

from __future__ import annotations

import base64
import gzip
import struct
import zlib

import lz4.frame
import pytest

from pipeline.sinks.clickhouse import compressed_blocks
from pipeline.sinks.clickhouse.http_protocol import (
    ClickHouseError,
    choose_encoding,
    content_type,
    credentials,
    decode_body,
    encoder,
    engine_error,
    exception_block,
    http_status,
    parse_request,
)
from pipeline.sinks.clickhouse.query_server import Gate, parse_users
from pipeline.sinks.clickhouse.sql_safety import (
    Limits,
    SqlRefused,
    escape_param,
    vet_client_settings,
    vet_statement,
)

# --- statements (given as formatQuery writes them) -----------------------------------


@pytest.mark.parametrize(
    ("canonical", "fmt"),
    [
        ("SELECT 1", None),
        ("WITH\n    1 AS x\nSELECT x\nFORMAT JSONEachRow", "JSONEachRow"),
        ("SELECT 'FORMAT CSV\\n' AS s\nFORMAT Native\nSETTINGS max_threads = 1", "Native"),
        ("SHOW TABLES", None),
        ("DESCRIBE TABLE events", None),
        ("EXISTS TABLE events", None),
        ("EXPLAIN\nSELECT 1", None),
        ("SELECT 'INTO OUTFILE' AS s, 'file(1)' AS t, `url`", None),
        ("SELECT URLHierarchy('http://a/b') AS h FROM numbers(1)", None),
    ],
)
def test_reads_pass_with_their_format(canonical: str, fmt: str | None) -> None:
    assert vet_statement(canonical) == fmt


@pytest.mark.parametrize(
    ("canonical", "code"),
    [
        ("INSERT INTO events FORMAT Native", 164),
        ("DROP TABLE events", 164),
        ("SYSTEM STOP MERGES", 164),
        ("KILL QUERY WHERE 1 ASYNC", 164),
        ("SET readonly = 0", 164),
        ("SELECT 1\nINTO OUTFILE '/tmp/x'", 610),
        ("SELECT file('/etc/passwd')", 164),
        ("SELECT *\nFROM FILE('/etc/passwd', 'LineAsString')", 164),
        ("SELECT *\nFROM s3('http://h/b/k', 'CSV')", 164),
        ("DESCRIBE TABLE url('http://h/x', 'CSV')", 164),
        ("SELECT *\nFROM remoteSecure('h', system.one)", 164),
        ("SELECT (SELECT count() FROM mysql('h', 'd', 't', 'u', 'p'))", 164),
    ],
)
def test_writes_and_reaching_out_are_refused(canonical: str, code: int) -> None:
    with pytest.raises(SqlRefused) as refused:
        vet_statement(canonical)
    assert refused.value.code == code


# --- settings a client sends ----------------------------------------------------------


def test_transport_and_harmless_settings_pass_limits_only_go_down() -> None:
    params = {
        "query": "SELECT 1",
        "database": "default",
        "session_id": "s",
        "wait_end_of_query": "1",
        "param_x": "1",
        "output_format_json_quote_64bit_integers": "0",
        "max_execution_time": "5",
        "compress": "1",
        "readonly": "1",
    }
    allowed = vet_client_settings(params, lambda name: None)
    assert allowed == {"output_format_json_quote_64bit_integers": "0", "max_execution_time": "5"}
    session = Limits().session(allowed | {"max_result_rows": "99999999"})
    assert session["max_execution_time"] == 5 and session["max_result_rows"] == 1_000_000
    assert list(session)[-2:] == ["allow_ddl", "readonly"] and session["readonly"] == 1


def test_other_settings_only_at_their_current_value() -> None:
    current = {"allow_introspection_functions": "0"}.get
    assert vet_client_settings({"allow_introspection_functions": "0"}, current) == {}
    with pytest.raises(SqlRefused, match="readonly mode") as lifted:
        vet_client_settings({"allow_introspection_functions": "1"}, current)
    assert lifted.value.code == 164
    with pytest.raises(SqlRefused, match="Unknown setting") as unknown:
        vet_client_settings({"no_such_setting": "1"}, current)
    assert unknown.value.code == 115
    with pytest.raises(SqlRefused):
        vet_client_settings({"readonly": "0"}, current)
    with pytest.raises(SqlRefused):
        vet_client_settings({"output_format_schema": "/tmp/x.proto"}, current)


def test_escape_param_round_trips_what_clickhouse_unescapes() -> None:
    assert escape_param("a\nb\t'c'\\") == "a\\nb\\t'c'\\\\"


# --- requests, credentials, errors ---------------------------------------------------


def test_query_parameter_and_body_are_joined() -> None:
    req = parse_request(
        "query=SELECT+%7Bn%3AUInt8%7D&param_n=3&default_format=CSV", {}, b"FROM numbers(1)"
    )
    assert req.sql == "SELECT {n:UInt8}\nFROM numbers(1)"
    assert req.query_params == {"n": "3"} and req.default_format == "CSV"
    jdbc = parse_request(
        "compress=1",
        {"X-ClickHouse-Format": "RowBinaryWithNamesAndTypes", "X-ClickHouse-Database": "db"},
        b"SELECT 1",
    )
    assert jdbc.default_format == "RowBinaryWithNamesAndTypes" and jdbc.database == "db"


def test_multipart_form_fields() -> None:
    boundary = "XyZ"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="query"\r\n\r\n'
        f"SELECT {{x:String}}\r\n--{boundary}\r\nContent-Disposition: form-data; "
        f'name="param_x"\r\n\r\nhello\r\n--{boundary}--\r\n'
    ).encode()
    req = parse_request("", {"Content-Type": f"multipart/form-data; boundary={boundary}"}, body)
    assert req.sql == "SELECT {x:String}" and req.query_params == {"x": "hello"}


def test_credentials_and_gate() -> None:
    basic = "Basic " + base64.b64encode(b"bi:pw").decode()
    assert credentials({"Authorization": basic}, {}).user == "bi"
    assert credentials({"X-ClickHouse-User": "u", "X-ClickHouse-Key": "k"}, {}).password == "k"
    assert credentials({}, {"user": "u", "password": "p"}).user == "u"
    assert not credentials({}, {}).given
    users = parse_users("bi:pw, other:x:y")
    assert users == {"bi": "pw", "other": "x:y"}
    trusting, strict = Gate(users, True), Gate(users, False)
    trusting.check("127.0.0.1", {}, {})
    trusting.check("::1", {"Authorization": "Basic " + base64.b64encode(b"default:").decode()}, {})
    strict.check("10.0.0.5", {"Authorization": basic}, {})
    for gate, peer, headers in (
        (strict, "127.0.0.1", {}),
        (trusting, "10.0.0.5", {}),
        (trusting, "127.0.0.1", {"Authorization": "Basic " + base64.b64encode(b"bi:no").decode()}),
    ):
        with pytest.raises(ClickHouseError) as denied:
            gate.check(peer, headers, {})
        assert denied.value.code == 516 and denied.value.status == 401


def test_engine_errors_keep_code_and_name() -> None:
    err = engine_error(
        RuntimeError(
            "Code: 60. DB::Exception: Unknown table expression identifier. (UNKNOWN_TABLE)"
        )
    )
    assert (err.code, err.name, err.status) == (60, "UNKNOWN_TABLE", 404)
    assert err.text.startswith("Code: 60. DB::Exception:")
    assert http_status(164) == 403 and http_status(62) == 400 and http_status(396) == 500


def test_exception_block_is_what_clickhouse_connect_parses() -> None:
    from clickhouse_connect.driver.transform import extract_exception_with_tag

    block = exception_block("abc123", "Code: 396. DB::Exception: too many. (TOO_MANY_ROWS)")
    message = extract_exception_with_tag(b"partial rows" + block, "abc123")
    assert message is not None and "Code: 396" in message


# --- encodings ------------------------------------------------------------------------


def test_encodings_stream_and_decode() -> None:
    data = [b"x" * 70000, b"y" * 10, b"z" * 100000]
    assert choose_encoding("lz4,zstd,gzip,deflate") == "lz4"
    assert choose_encoding("br, gzip;q=0, deflate") == "deflate"
    assert choose_encoding("br") is None
    decoders = {
        "gzip": gzip.decompress,
        "deflate": zlib.decompress,
        "lz4": lz4.frame.decompress,
        "zstd": lambda b: decode_body(b, "zstd"),
    }
    for name, decode in decoders.items():
        enc = encoder(name)
        body = b"".join(enc.compress(part) for part in data) + enc.flush()
        assert decode(body) == b"".join(data), name
        assert decode_body(body, name) == b"".join(data)


def test_clickhouse_compressed_blocks() -> None:
    raw = bytes(range(256)) * 5000  # more than one 1 MiB block
    framed = compressed_blocks.BlockEncoder().compress(raw)
    method, size, raw_size = struct.unpack_from("<BII", framed, 16)
    assert method == 0x82 and raw_size == 1024 * 1024 and size < raw_size
    assert compressed_blocks.decode_blocks(framed) == raw


def test_content_types() -> None:
    assert content_type("Native") == "application/octet-stream"
    assert content_type("TSVWithNames").startswith("text/tab-separated-values")
    assert content_type("CSVWithNames").endswith("header=present")
    assert content_type("JSONEachRow").startswith("application/x-ndjson")
    assert content_type("JSONCompact").startswith("application/json")
