"""Benchmarks of data collection and the lake (issue 5), each printed as a ratio against a same-run baseline.

- ingest: events/s through POST /events (the API served by `fincoach ingest-api` in its own process, the
  load from another process over loopback), zero loss, beside the database-layer rate of the same rows
  (COPY into staging + INSERT ... ON CONFLICT DO NOTHING, `pipelines.ingest_store`);
- extract: one day of 1M events (+ transactions and decisions) Postgres → Parquet, rows/s beside a raw
  `COPY ... TO STDOUT` of the same rows to nowhere (the ceiling) and `pandas.read_sql`;
- hourly data stage: one run of extract (with quarantine, scrub, pseudonyms) + the raw gate at that volume.

Run: FINCOACH_DATABASE_URL=... PYTHONPATH=$PWD .venv/bin/pytest -q -s -m bench tests/bench/test_data_collection_bench.py
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import subprocess
import sys
import textwrap
import time

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
import sqlalchemy as sa

pytestmark = pytest.mark.bench

DAY = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
END = DAY + dt.timedelta(days=1)
N_USERS, N_EVENTS, N_TRANSACTIONS, N_DECISIONS = 20_000, 1_000_000, 300_000, 30_000
TS = pa.timestamp("us", "UTC")
PAGES = ("home", "transactions", "budget", "goals", "insights", "accounts", "coach", "settings")


def _ts(us: np.ndarray) -> pa.Array:
    return pa.array(us + int(DAY.timestamp() * 1e6), TS)


def _copy(conn: sa.Connection, table: str, data: pa.Table) -> None:
    buf = io.BytesIO()
    pacsv.write_csv(data, buf, pacsv.WriteOptions(include_header=False))
    cols = ", ".join(f'"{c}"' for c in data.column_names)
    with conn.connection.driver_connection.cursor() as cur, cur.copy(
        f"copy app.{table} ({cols}) from stdin (format csv)"
    ) as copy:
        copy.write(buf.getvalue())


def _generate(engine: sa.Engine) -> dict[str, int]:
    """One day of app rows (numpy + COPY): users and accounts before it, events/transactions/decisions in it."""
    rng = np.random.default_rng(5)
    day_us = 86_400 * 10**6
    ids = np.arange(1, N_USERS + 1)
    before = np.full(N_USERS, -day_us)
    users = pa.table({
        "user_id": ids, "created_at": _ts(before), "birth_year": rng.integers(1950, 2005, N_USERS),
        "income_band": rng.choice(["low", "middle", "high"], N_USERS), "pay_frequency": np.full(N_USERS, "monthly"),
        "monthly_income": rng.integers(1000, 9000, N_USERS).astype(float), "region": np.full(N_USERS, "west"),
        "device_type": rng.choice(["ios", "android", "web"], N_USERS), "risk_tolerance": np.full(N_USERS, "medium"),
        "updated_at": _ts(before),
    })
    accounts = pa.table({"account_id": ids, "user_id": ids, "account_type": np.full(N_USERS, "checking"), "opened_at": _ts(before),
                         "current_balance": rng.integers(0, 5000, N_USERS).astype(float), "updated_at": _ts(before)})
    payloads = np.array([json.dumps({"page": p}) for p in PAGES]
                        + [json.dumps({"page": p, "element": "button"}) for p in PAGES]
                        + [json.dumps({"field": "current_amount", "delta": d}) for d in range(10, 200, 10)])
    contexts = np.array([json.dumps({"device": d, "app_version": f"3.{v}.0"}) for d in ("ios", "android", "web")
                         for v in range(5)])
    e_user = rng.integers(1, N_USERS + 1, N_EVENTS)
    e_at = np.sort(rng.integers(0, day_us, N_EVENTS))
    events = pa.table({
        "id": np.arange(1, N_EVENTS + 1), "user_id": e_user,
        "event_type": rng.choice(["page_view", "click", "budget_view", "goal_update", "nudge_view"], N_EVENTS),
        "event_data": payloads[rng.integers(0, len(payloads), N_EVENTS)],
        "timestamp": _ts(e_at - rng.integers(0, 60 * 10**6, N_EVENTS)),
        "session_id": pa.array(np.char.add("s-", (e_user * 100 + e_at // (3600 * 10**6)).astype(str))),
        "context": contexts[e_user % len(contexts)], "updated_at": _ts(e_at),
    })
    t_user = rng.integers(1, N_USERS + 1, N_TRANSACTIONS)
    t_at = np.sort(rng.integers(0, day_us, N_TRANSACTIONS))
    transactions = pa.table({
        "transaction_id": np.arange(1, N_TRANSACTIONS + 1), "user_id": t_user, "account_id": t_user,
        "amount": -rng.integers(100, 20_000, N_TRANSACTIONS) / 100.0,
        "category": rng.choice(["groceries", "dining", "transport", "shopping"], N_TRANSACTIONS),
        "merchant": rng.choice(["FreshMart", "Cafe Luna", "Metro Transit"], N_TRANSACTIONS),
        "is_impulse": rng.random(N_TRANSACTIONS) < 0.1, "occurred_at": _ts(t_at), "updated_at": _ts(t_at),
    })
    d_at = np.sort(rng.integers(0, day_us, N_DECISIONS))
    decisions = pa.table({
        "id": np.arange(1, N_DECISIONS + 1), "user_id": rng.integers(1, N_USERS + 1, N_DECISIONS),
        "decision_type": rng.choice(["transfer_to_savings", "set_budget", "skip_purchase"], N_DECISIONS),
        "amount": rng.integers(1000, 50_000, N_DECISIONS) / 100.0,
        "category": rng.choice(["dining", "shopping"], N_DECISIONS),
        "context": rng.choice([json.dumps({"source": "organic", "screen": s}) for s in ("home", "budget")],
                              N_DECISIONS),
        "outcome": rng.choice(["completed", "abandoned"], N_DECISIONS), "timestamp": _ts(d_at),
        "updated_at": _ts(d_at),
    })
    with engine.begin() as conn:
        conn.execute(sa.text(
            "truncate app.users, ops.extract_runs, ops.quarantine_counts, ops.user_pseudonyms, ops.ingest_counts "
            "restart identity cascade"))
        if conn.execute(sa.text("select rolsuper from pg_roles where rolname = current_user")).scalar():
            # the generated rows are consistent by construction: skip the per-row foreign-key triggers
            conn.execute(sa.text("set local session_replication_role = replica"))
        for name, data in (("users", users), ("accounts", accounts), ("user_events", events),
                           ("transactions", transactions), ("financial_decisions", decisions)):
            _copy(conn, name, data)
        for name, pk in (("users", "user_id"), ("accounts", "account_id"), ("user_events", "id"),
                         ("transactions", "transaction_id"), ("financial_decisions", "id")):
            conn.execute(sa.text(f"select setval(pg_get_serial_sequence('app.{name}', '{pk}'), "
                                 f"(select max({pk}) from app.{name}))"))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("analyze"))
    return {"user_events": N_EVENTS, "transactions": N_TRANSACTIONS, "financial_decisions": N_DECISIONS}


@pytest.fixture(scope="module")
def one_day(engine):
    from fincoach import lake

    started = time.perf_counter()
    counts = _generate(engine)
    print(f"\n[bench] generated {sum(counts.values()):,} rows of one day in {time.perf_counter() - started:.1f}s")
    fs, root = lake.filesystem()
    for layer in ("raw", "quarantine"):
        if lake.exists(layer):
            fs.delete_dir(f"{root}/{layer}")
    return counts


def _day_sql(table: str) -> str:
    from pipelines.extract import SCHEMAS

    cols = ", ".join(f'"{c}"' for c in SCHEMAS[table].names)
    return (f"select {cols} from app.{table} where updated_at > '{DAY.isoformat()}' "
            f"and updated_at <= '{END.isoformat()}' order by 1")


def _copy_to_nowhere(engine, tables) -> float:
    started = time.perf_counter()
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        for table in tables:
            with raw.cursor() as cur, cur.copy(f"copy ({_day_sql(table)}) to stdout (format csv)") as copy:
                for _ in copy:
                    pass
    return time.perf_counter() - started


def _read_sql(engine, tables) -> float:
    import pandas as pd

    started = time.perf_counter()
    with engine.connect() as conn:
        for table in tables:
            pd.read_sql(sa.text(_day_sql(table)), conn)
    return time.perf_counter() - started


def test_extract_one_day_to_parquet_against_copy_and_read_sql(engine, one_day):
    from pipelines.extract import extract_all

    tables = list(one_day)
    rows = sum(one_day.values())
    ceiling = _copy_to_nowhere(engine, tables)
    pandas_s = _read_sql(engine, tables)
    started = time.perf_counter()
    result = extract_all(engine, END, "bench-day")
    ours = time.perf_counter() - started
    for table in tables:
        print(f"[bench]   {table}: {result[table]['extracted']:,} rows, seconds {result[table]['seconds']}")
    for table, n in one_day.items():
        assert result[table]["extracted"] == result[table]["accepted"] + result[table]["quarantined"] == n
    day_rows = rows + 2 * N_USERS  # the first run also extracts users and accounts
    print(f"\n[bench] extract one day: {day_rows:,} rows in {ours:.2f}s = {day_rows / ours:,.0f} rows/s "
          f"(quarantine, PII scrub and pseudonyms included, {sum(len(r['paths']) for r in result.values())} files)")
    print(f"[bench]   COPY TO STDOUT to nowhere: {rows / ceiling:,.0f} rows/s -> ours / ceiling = "
          f"{(rows / ours) / (rows / ceiling):.2f} (aim >= 0.5)")
    print(f"[bench]   pandas.read_sql: {rows / pandas_s:,.0f} rows/s -> ours / read_sql = "
          f"{(rows / ours) / (rows / pandas_s):.1f}x (aim >= 8)")


def test_one_hourly_data_stage_run_at_one_million_events_a_day(engine, one_day):
    from pipelines.extract import SOURCE_TABLES, extract_all
    from pipelines.validation import validate_raw

    prev = END - dt.timedelta(hours=1)
    with engine.begin() as conn:  # as if the hourly runs before this one had happened
        conn.execute(sa.text("truncate ops.extract_runs, ops.quarantine_counts"))
        conn.execute(sa.text(
            "insert into ops.extract_runs (table_name, interval_end, low_watermark, high_watermark, row_count, run_id) "
            "select t, :e, null, :e, 0, 'bench-prev' from unnest(cast(:tables as text[])) t"),
            {"e": prev, "tables": list(SOURCE_TABLES)})
    started = time.perf_counter()
    result = extract_all(engine, END, "bench-hour")
    extracted = time.perf_counter() - started
    validated = validate_raw(result, "bench-hour")
    total = time.perf_counter() - started
    read = sum(r["extracted"] for r in result.values())
    print(f"\n[bench] hourly data stage at {N_EVENTS:,} events/day: {read:,} rows read (last hour + 2 h overlap), "
          f"extract + quarantine {extracted:.1f}s, + raw gate {total:.1f}s "
          f"({validated['evaluated']} expectations); budget 60 s -> {total / 60:.2f} of it")
    assert total < 60
    started = time.perf_counter()
    rerun = validate_raw(extract_all(engine, END, "bench-hour-again"), "bench-hour-again")
    print(f"[bench]   rerun of that hour: {time.perf_counter() - started:.1f}s ({rerun['evaluated']} expectations)")


_LOAD = textwrap.dedent("""
    import json, sys, time, concurrent.futures as cf, httpx
    url, n, batch, threads, key = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    ts = "2026-03-01T12:00:00+00:00"
    def body(b):
        return json.dumps({"events": [
            {"kind": "interaction", "event_id": f"bench-{i}", "user_id": 1 + i % 20000, "timestamp": ts,
             "session_id": f"s-{i % 5000}", "event_type": "page_view", "event_data": {"page": "home"},
             "context": {"device": "ios"}} for i in range(b * batch, min(n, (b + 1) * batch))]})
    bodies = [body(b) for b in range((n + batch - 1) // batch)]
    def post(client, data):
        r = client.post(url, content=data, headers={"Content-Type": "application/json", "X-API-Key": key})
        r.raise_for_status()
        return r.json()["stored"]
    clients = [httpx.Client(timeout=60) for _ in range(threads)]
    started = time.perf_counter()
    with cf.ThreadPoolExecutor(threads) as pool:
        stored = sum(pool.map(lambda ib: post(clients[ib[0] % threads], ib[1]), enumerate(bodies)))
    print(json.dumps({"sent": n, "stored": stored, "seconds": time.perf_counter() - started}))
""")


def test_ingest_events_per_second_over_http_against_the_database_layer(engine, one_day, loopback_port_bench):
    from pipelines.event_schemas import EVENT_LIST
    from pipelines.ingest_store import store_events

    n, batch = 200_000, 1000
    env = {**os.environ, "FINCOACH_INGEST_PORT": str(loopback_port_bench), "FINCOACH_API_KEYS": "bench"}
    api = subprocess.Popen([sys.executable, "-c", "from fincoach.cli import main; main(['ingest-api'])"], env=env)
    url = f"http://127.0.0.1:{loopback_port_bench}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{url}/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and api.poll() is None, "ingestion API did not start"
                time.sleep(0.2)
        out = subprocess.run([sys.executable, "-c", _LOAD, f"{url}/events", str(n), str(batch), "4", "bench"],
                             capture_output=True, text=True, check=True, timeout=900)
    finally:
        api.terminate()
        api.wait(30)
    load = json.loads(out.stdout.strip().splitlines()[-1])
    with engine.connect() as conn:
        in_db = conn.execute(sa.text("select count(*) from app.user_events where client_event_id like 'bench-%'"))
        in_db = in_db.scalar_one()
    assert load["stored"] == in_db == n  # zero loss
    http_rate = n / load["seconds"]

    ts = "2026-03-01T12:00:00+00:00"
    events = EVENT_LIST.validate_python([
        {"kind": "interaction", "event_id": f"db-{i}", "user_id": 1 + i % 20000, "timestamp": ts,
         "session_id": f"s-{i % 5000}", "event_type": "page_view", "event_data": {"page": "home"},
         "context": {"device": "ios"}} for i in range(n)])
    started = time.perf_counter()
    stored = sum(store_events(engine, events[i:i + 5 * batch]).stored for i in range(0, n, 5 * batch))
    db_rate = n / (time.perf_counter() - started)
    assert stored == n
    print(f"\n[bench] ingest over HTTP: {n:,} events in {load['seconds']:.1f}s = {http_rate:,.0f} events/s "
          f"(batches of {batch}, 4 connections, zero loss: {in_db:,} stored)")
    print(f"[bench]   database layer (COPY to staging + INSERT ON CONFLICT, batches of {5 * batch}): "
          f"{db_rate:,.0f} rows/s -> HTTP / database = {http_rate / db_rate:.2f}")


@pytest.fixture()
def loopback_port_bench() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
