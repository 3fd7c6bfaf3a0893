"""`geosaga gateway` against its contract (docs/gateway.md): every endpoint, on a real process
with its store on SQLite and on PostgreSQL (a database of its own, dropped afterwards)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import create_engine, inspect, text

from gateway.models import GatewayModel
from gateway.store import GatewayStore
from tests.conftest import POSTGRES_ADMIN_URL
from tests.gateway_server import GatewayServer, gateway_process

HOLD = {"token": "tok_ok", "amount": "24.00", "currency": "USD"}


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def store_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The gateway's own database: a SQLite file, or a PostgreSQL database made for it."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('gateway-store')}/gateway.db"
        return
    name = f"geosaga_gateway_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{POSTGRES_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="module")
def server(store_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    with gateway_process(tmp_path_factory.mktemp("gateway"), store_url) as running:
        yield running


@pytest_asyncio.fixture
async def http(server: GatewayServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, headers=server.headers, timeout=30) as client:
        yield client
        # Faults are the process's: none outlives the test that set them.
        (await client.put("/faults", json={})).raise_for_status()


def reference() -> str:
    return f"order-{uuid.uuid4().hex[:12]}/authorise/us-east"


async def post(
    http: httpx.AsyncClient, path: str, body: dict[str, Any] | None = None, key: str | None = None
) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key is not None else {}
    return await http.post(path, json=body, headers=headers)


async def authorise(http: httpx.AsyncClient, ref: str, **changes: str) -> httpx.Response:
    return await post(http, "/authorisations", {"reference": ref, **HOLD, **changes}, key=ref)


async def ledger(http: httpx.AsyncClient, ref: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    after = 0
    while True:
        page = (await http.get("/ledger", params={"after": after})).raise_for_status().json()
        if not page["entries"]:
            return [entry for entry in entries if entry["reference"] == ref]
        entries += page["entries"]
        after = page["next"]


async def under(http: httpx.AsyncClient, ref: str) -> list[dict[str, Any]]:
    answer = await http.get("/authorisations", params={"reference": ref})
    found: list[dict[str, Any]] = answer.raise_for_status().json()["authorisations"]
    return found


# Authentication -------------------------------------------------------------------------------


async def test_only_healthz_answers_without_the_key(server: GatewayServer) -> None:
    async with httpx.AsyncClient(base_url=server.url) as anonymous:
        health = await anonymous.get("/healthz")
        unkeyed = [
            await anonymous.get("/ledger"),
            await anonymous.get("/faults"),
            await post(anonymous, "/authorisations", {"reference": reference(), **HOLD}, "k"),
            await post(anonymous, "/console/authorisations/auth_x/release"),
        ]
        wrong = await anonymous.get("/ledger", headers={"Authorization": "Bearer not-the-key"})

    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    for answer in [*unkeyed, wrong]:
        assert answer.status_code == 401, answer.text
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")
        assert "gateway key" in answer.json()["detail"]


# Tokens ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "status", "reason"),
    [
        ("tok_ok", "authorised", None),
        ("tok_void_fail", "authorised", None),
        ("tok_decline", "declined", "card declined"),
        ("tok_stolen", "declined", "unknown sandbox token"),
    ],
)
async def test_each_token_authorises_or_declines(
    http: httpx.AsyncClient, token: str, status: str, reason: str | None
) -> None:
    ref = reference()

    answer = await authorise(http, ref, token=token)

    assert answer.status_code == 201, answer.text
    made = answer.json()
    assert (made["reference"], made["status"], made["reason"]) == (ref, status, reason)
    assert (made["amount"], made["currency"], made["captured_amount"]) == ("24.00", "USD", None)
    assert made["id"].startswith("auth_")
    assert "token" not in made
    [entry] = await ledger(http, ref)
    assert (entry["kind"], entry["authorisation_id"]) == (status, made["id"])
    assert (entry["amount"], entry["currency"], entry["idempotency_key"]) == ("24.00", "USD", ref)


async def test_a_flaky_card_answers_503_twice_then_authorises(http: httpx.AsyncClient) -> None:
    ref = reference()

    answers = [await authorise(http, ref, token="tok_flaky") for _ in range(4)]

    assert [a.status_code for a in answers] == [503, 503, 201, 201]
    assert "tok_flaky" in answers[0].json()["detail"]
    # The 503s were not kept: the third try made the authorisation, the fourth replays it.
    assert "Idempotent-Replayed" not in answers[2].headers
    assert answers[3].headers["Idempotent-Replayed"] == "true"
    assert answers[2].json()["status"] == "authorised"
    assert [e["kind"] for e in await ledger(http, ref)] == ["authorised"]


# Idempotency and bad input --------------------------------------------------------------------


async def test_a_repeated_key_gets_the_first_answer_and_another_request_409(
    http: httpx.AsyncClient,
) -> None:
    ref = reference()

    first = await authorise(http, ref)
    again = await authorise(http, ref)
    # The same amount written another way is the same request.
    same = await post(http, "/authorisations", {"reference": ref, **HOLD, "amount": 24}, ref)
    other = await authorise(http, ref, amount="25.00")
    other_reference = await post(http, "/authorisations", {"reference": reference(), **HOLD}, ref)

    assert first.status_code == 201
    assert "Idempotent-Replayed" not in first.headers
    for repeat in (again, same):
        assert (repeat.status_code, repeat.content) == (201, first.content)
        assert repeat.headers["Idempotent-Replayed"] == "true"
    for conflict in (other, other_reference):
        assert conflict.status_code == 409, conflict.text
        assert "Idempotency-Key" in conflict.json()["detail"]
    assert len(await under(http, ref)) == 1
    assert len(await ledger(http, ref)) == 1


async def test_a_reference_takes_one_authorisation(http: httpx.AsyncClient) -> None:
    ref = reference()
    first = await authorise(http, ref)

    second = await post(http, "/authorisations", {"reference": ref, **HOLD}, key=f"{ref}/2")

    assert second.status_code == 409
    assert first.json()["id"] in second.json()["detail"]
    assert len(await under(http, ref)) == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"token": "tok_ok", "amount": "24.00", "currency": "USD"}, "reference"),
        ({"reference": "r", "token": "tok_ok", "amount": "-1", "currency": "USD"}, "amount"),
        ({"reference": "r", "token": "tok_ok", "amount": "0.001", "currency": "USD"}, "amount"),
        ({"reference": "r", "token": "tok_ok", "amount": "lots", "currency": "USD"}, "amount"),
        (
            {"reference": "r", "token": "tok_ok", "amount": "1.00", "currency": "dollars"},
            "currency",
        ),
        ({"reference": "r", "token": "", "amount": "1.00", "currency": "USD"}, "token"),
        ({"reference": "r", **HOLD, "tip": "5.00"}, "tip"),
    ],
)
async def test_a_bad_body_is_422_naming_the_field(
    http: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    answer = await post(http, "/authorisations", body, key=f"bad-{uuid.uuid4().hex}")

    assert answer.status_code == 422
    assert answer.json()["detail"].startswith(f"{field}:"), answer.text


async def test_a_write_without_an_idempotency_key_is_422(http: httpx.AsyncClient) -> None:
    ref = reference()

    missing = await post(http, "/authorisations", {"reference": ref, **HOLD})
    empty = await post(http, "/authorisations", {"reference": ref, **HOLD}, key="")
    long = await post(http, "/authorisations", {"reference": ref, **HOLD}, key="k" * 201)
    cancel = await post(http, "/cancels", {"reference": ref})

    for answer in (missing, empty, long, cancel):
        assert answer.status_code == 422, answer.text
        assert "Idempotency-Key" in answer.json()["detail"]
    assert await under(http, ref) == []


# Capture and void -----------------------------------------------------------------------------


async def test_one_capture_per_authorisation_never_above_the_hold(
    http: httpx.AsyncClient,
) -> None:
    ref = reference()
    made = (await authorise(http, ref)).json()
    path = f"/authorisations/{made['id']}/capture"

    above = await post(http, path, {"amount": "24.01"}, key=f"{ref}/too-much")
    nothing = await post(http, path, {"amount": "0"}, key=f"{ref}/nothing")
    captured = await post(http, path, {"amount": "20.00"}, key=f"{ref}/capture")
    replayed = await post(http, path, {"amount": "20.00"}, key=f"{ref}/capture")
    twice = await post(http, path, {"amount": "4.00"}, key=f"{ref}/capture-2")
    above_again = await post(http, path, {"amount": "24.01"}, key=f"{ref}/too-much")
    missing = await post(http, "/authorisations/auth_none/capture", {"amount": "1"}, key="k-none")

    assert above.status_code == 422
    assert above.json()["detail"].startswith("amount:")
    assert nothing.status_code == 422
    assert nothing.json()["detail"].startswith("amount:")
    assert captured.status_code == 200, captured.text
    assert (captured.json()["status"], captured.json()["captured_amount"]) == ("captured", "20.00")
    assert (replayed.status_code, replayed.content) == (200, captured.content)
    assert twice.status_code == 409
    # A refusal is kept for its key like any answer.
    assert (above_again.status_code, above_again.content) == (422, above.content)
    assert above_again.headers["Idempotent-Replayed"] == "true"
    assert missing.status_code == 404
    entries = await ledger(http, ref)
    assert [(e["kind"], e["amount"]) for e in entries] == [
        ("authorised", "24.00"),
        ("captured", "20.00"),
    ]
    assert entries[1]["idempotency_key"] == f"{ref}/capture"


async def test_a_void_releases_the_hold_once(http: httpx.AsyncClient) -> None:
    ref = reference()
    made = (await authorise(http, ref)).json()
    declined = (await authorise(http, reference(), token="tok_decline")).json()
    captured = (await authorise(http, reference())).json()
    await post(
        http, f"/authorisations/{captured['id']}/capture", {"amount": "24.00"}, key=f"{ref}/c"
    )

    voided = await post(http, f"/authorisations/{made['id']}/void", key=f"{ref}/void")
    again = await post(http, f"/authorisations/{made['id']}/void", key=f"{ref}/void-2")
    declined_void = await post(http, f"/authorisations/{declined['id']}/void", key=f"{ref}/d")
    captured_void = await post(http, f"/authorisations/{captured['id']}/void", key=f"{ref}/cv")
    missing = await post(http, "/authorisations/auth_none/void", key=f"{ref}/missing")

    assert voided.status_code == 200
    assert voided.json()["status"] == "voided"
    assert (again.status_code, again.json()["status"]) == (200, "voided")
    assert (declined_void.status_code, declined_void.json()["status"]) == (200, "declined")
    assert captured_void.status_code == 409
    assert missing.status_code == 404
    assert [(e["kind"], e["idempotency_key"]) for e in await ledger(http, ref)] == [
        ("authorised", ref),
        ("voided", f"{ref}/void"),
    ]


# Cancels --------------------------------------------------------------------------------------


async def test_a_cancel_before_its_authorisation_voids_it_on_arrival(
    http: httpx.AsyncClient,
) -> None:
    ref = reference()

    cancelled = await post(http, "/cancels", {"reference": ref}, key=f"{ref}/void")
    late = await authorise(http, ref)

    assert cancelled.status_code == 200
    assert cancelled.json() == {"reference": ref, "authorisations": []}
    assert late.status_code == 201
    assert late.json()["status"] == "voided"
    entries = await ledger(http, ref)
    assert [(e["kind"], e["authorisation_id"]) for e in entries] == [
        ("cancelled", None),
        ("voided", late.json()["id"]),
    ]


async def test_a_cancel_voids_what_is_held_and_refuses_a_capture(
    http: httpx.AsyncClient,
) -> None:
    ref, taken = reference(), reference()
    made = (await authorise(http, ref)).json()
    paid = (await authorise(http, taken)).json()
    await post(http, f"/authorisations/{paid['id']}/capture", {"amount": "24.00"}, key=f"{taken}/c")

    cancelled = await post(http, "/cancels", {"reference": ref}, key=f"{ref}/void")
    again = await post(http, "/cancels", {"reference": ref}, key=f"{ref}/void-2")
    refused = await post(http, "/cancels", {"reference": taken}, key=f"{taken}/void")

    assert cancelled.status_code == 200
    [voided] = cancelled.json()["authorisations"]
    assert (voided["id"], voided["status"]) == (made["id"], "voided")
    assert again.json()["authorisations"][0]["status"] == "voided"
    assert refused.status_code == 409
    assert [e["kind"] for e in await ledger(http, ref)] == ["authorised", "voided"]
    assert [e["kind"] for e in await ledger(http, taken)] == ["authorised", "captured"]


async def test_a_void_fail_hold_goes_only_through_the_console(http: httpx.AsyncClient) -> None:
    ref = reference()
    made = (await authorise(http, ref, token="tok_void_fail")).json()

    void = await post(http, f"/authorisations/{made['id']}/void", key=f"{ref}/v")
    cancel = await post(http, "/cancels", {"reference": ref}, key=f"{ref}/void")
    held = await under(http, ref)
    released = await post(http, f"/console/authorisations/{made['id']}/release")
    released_again = await post(http, f"/console/authorisations/{made['id']}/release")
    # The same key as the failed cancel: a 503 was not kept, so this one is done now.
    cancel_after = await post(http, "/cancels", {"reference": ref}, key=f"{ref}/void")
    missing = await post(http, "/console/authorisations/auth_none/release")

    assert (void.status_code, cancel.status_code) == (503, 503)
    assert "console" in cancel.json()["detail"]
    assert [a["status"] for a in held] == ["authorised"]
    assert released.status_code == 200
    assert (released.json()["status"], released.json()["reason"]) == (
        "voided",
        "released in the console",
    )
    assert released_again.json()["status"] == "voided"
    assert cancel_after.status_code == 200
    assert "Idempotent-Replayed" not in cancel_after.headers
    assert missing.status_code == 404
    assert [(e["kind"], e["idempotency_key"]) for e in await ledger(http, ref)] == [
        ("authorised", ref),
        ("voided", "console"),
    ]


async def test_the_console_cannot_release_a_capture(http: httpx.AsyncClient) -> None:
    ref = reference()
    made = (await authorise(http, ref)).json()
    await post(http, f"/authorisations/{made['id']}/capture", {"amount": "24.00"}, key=f"{ref}/c")

    refused = await post(http, f"/console/authorisations/{made['id']}/release")

    assert refused.status_code == 409
    assert "captured" in refused.json()["detail"]


# Reads ----------------------------------------------------------------------------------------


async def test_reading_authorisations_and_the_ledger(http: httpx.AsyncClient) -> None:
    ref = reference()
    made = (await authorise(http, ref)).json()
    await post(http, "/cancels", {"reference": ref}, key=f"{ref}/void")

    one = await http.get(f"/authorisations/{made['id']}")
    listed = await under(http, ref)
    missing = await http.get("/authorisations/auth_none")
    unnamed = await http.get("/authorisations")
    everything = (await http.get("/ledger")).json()
    [first] = (await http.get("/ledger", params={"limit": 1})).json()["entries"]
    tail = (await http.get("/ledger", params={"after": everything["next"]})).json()
    too_many = await http.get("/ledger", params={"limit": 1001})

    assert one.status_code == 200
    assert (one.json()["id"], one.json()["status"]) == (made["id"], "voided")
    assert listed == [one.json()]
    assert missing.status_code == 404
    assert unnamed.status_code == 422
    assert unnamed.json()["detail"].startswith("reference:")
    seqs = [entry["seq"] for entry in everything["entries"]]
    assert seqs == sorted(seqs)
    assert everything["next"] == seqs[-1]
    assert first == everything["entries"][0]
    assert tail == {"entries": [], "next": everything["next"]}
    assert too_many.status_code == 422
    assert too_many.json()["detail"].startswith("limit:")


# Faults ---------------------------------------------------------------------------------------


async def test_faults_are_set_read_and_checked(http: httpx.AsyncClient) -> None:
    none = (await http.get("/faults")).json()
    bad = await http.put("/faults", json={"error_rate": 2})
    unknown = await http.put("/faults", json={"meteor_rate": 0.1})
    put = await http.put("/faults", json={"latency_rate": 0.5, "seed": 3})

    assert none["error_rate"] == none["hang_rate"] == none["lost_reply_rate"] == 0
    assert (bad.status_code, unknown.status_code) == (422, 422)
    assert bad.json()["detail"].startswith("error_rate:")
    assert unknown.json()["detail"].startswith("meteor_rate:")
    assert put.status_code == 200
    assert (await http.get("/faults")).json() == put.json()
    assert put.json()["latency_rate"] == 0.5


async def test_an_error_fault_answers_503_and_writes_nothing(http: httpx.AsyncClient) -> None:
    ref = reference()
    made = (await authorise(http, ref)).json()
    await http.put("/faults", json={"error_rate": 1})

    refused = await authorise(http, reference())
    cancel = await post(http, "/cancels", {"reference": ref}, key=f"{ref}/void")
    released = await post(http, f"/console/authorisations/{made['id']}/release")

    assert (refused.status_code, cancel.status_code) == (503, 503)
    assert "injected" in cancel.json()["detail"]
    # The console is a person, not the API: faults do not touch it.
    assert released.status_code == 200
    assert [e["idempotency_key"] for e in await ledger(http, ref)] == [ref, "console"]


async def test_a_lost_reply_was_written_and_its_key_answers_it(http: httpx.AsyncClient) -> None:
    ref = reference()
    await http.put("/faults", json={"lost_reply_rate": 1})

    lost = await authorise(http, ref)
    await http.put("/faults", json={})
    again = await authorise(http, ref)

    assert lost.status_code == 502
    assert "lost" in lost.json()["detail"]
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    [made] = await under(http, ref)
    assert again.json() == made
    assert [e["kind"] for e in await ledger(http, ref)] == ["authorised"]


async def test_a_hang_outlasts_the_caller_and_the_write_lands_afterwards(
    http: httpx.AsyncClient,
) -> None:
    ref = reference()
    await http.put("/faults", json={"hang_rate": 1, "hang_seconds": 2})

    with pytest.raises(httpx.ReadTimeout):
        await http.post(
            "/authorisations",
            json={"reference": ref, **HOLD},
            headers={"Idempotency-Key": ref},
            timeout=0.5,
        )
    await http.put("/faults", json={})
    for _ in range(300):
        if await ledger(http, ref):
            break
        await asyncio.sleep(0.1)
    again = await authorise(http, ref)

    assert [e["kind"] for e in await ledger(http, ref)] == ["authorised"]
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"


async def test_seeded_faults_replay_the_same_draws(http: httpx.AsyncClient) -> None:
    async def statuses() -> list[int]:
        await http.put("/faults", json={"error_rate": 0.5, "seed": 7})
        return [
            (await authorise(http, reference(), token="tok_decline")).status_code for _ in range(12)
        ]

    first, second = await statuses(), await statuses()

    assert first == second
    assert set(first) == {201, 503}


# Races ----------------------------------------------------------------------------------------


async def test_concurrent_posts_with_one_key_make_one_authorisation(
    http: httpx.AsyncClient,
) -> None:
    ref = reference()

    answers = await asyncio.gather(*(authorise(http, ref) for _ in range(20)))

    assert {a.status_code for a in answers} == {201}
    assert len({a.content for a in answers}) == 1
    assert sum("Idempotent-Replayed" not in a.headers for a in answers) == 1
    assert len(await under(http, ref)) == 1
    assert [e["kind"] for e in await ledger(http, ref)] == ["authorised"]


async def test_a_cancel_racing_its_authorisation_leaves_no_hold(http: httpx.AsyncClient) -> None:
    refs = [reference() for _ in range(10)]

    await asyncio.gather(
        *(authorise(http, ref) for ref in refs),
        *(post(http, "/cancels", {"reference": ref}, key=f"{ref}/void") for ref in refs),
    )

    for ref in refs:
        assert [a["status"] for a in await under(http, ref)] == ["voided"], ref
        kinds = [e["kind"] for e in await ledger(http, ref)]
        assert kinds in (["authorised", "voided"], ["cancelled", "voided"]), (ref, kinds)


def test_gateways_starting_together_make_their_tables_once(store_url: str, tmp_path: Path) -> None:
    """Several processes open one new database at once (threads with engines of their own
    stand in for them here); each finds the tables made, none trips over another."""
    url = f"sqlite:///{tmp_path}/fresh.db"
    if not store_url.startswith("sqlite"):
        schema = f"g{uuid.uuid4().hex[:10]}"
        engine = create_engine(store_url, isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        engine.dispose()
        url = f"{store_url}?options=-csearch_path%3D{schema}"
    stores = [GatewayStore(url) for _ in range(6)]
    start = threading.Barrier(len(stores))

    def create(store: GatewayStore) -> None:
        start.wait()
        store.create_tables()

    try:
        with ThreadPoolExecutor(len(stores)) as pool:
            list(pool.map(create, stores))
        made = set(inspect(stores[0].engine).get_table_names())
    finally:
        for store in stores:
            store.dispose()
    assert made == set(GatewayModel.metadata.tables)


# The command and the package ------------------------------------------------------------------


def geosaga(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {name: value for name, value in os.environ.items() if not name.startswith("GEOSAGA_")}
    return subprocess.run(
        [sys.executable, "-m", "geosaga", *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["gateway"], {}),
        (["gateway"], {"GEOSAGA_GATEWAY_API_KEY": "geosaga-local-gateway-key"}),
        (
            ["worker", "--region", "us-east"],
            {
                "GEOSAGA_API_KEYS": "production-api-key-0123456789",
                "GEOSAGA_PAYLOAD_KEYS": '{"k": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="}',
                # Nothing listens here: the refusal comes before any connection.
                "GEOSAGA_TEMPORAL_ADDRESS": "127.0.0.1:9",
            },
        ),
    ],
)
def test_production_refuses_to_serve_or_call_the_gateway_without_its_own_key(
    args: list[str], env: dict[str, str], tmp_path: Path
) -> None:
    run = geosaga(
        *args, env={"GEOSAGA_ENVIRONMENT": "production", "GEOSAGA_DATA_DIR": str(tmp_path), **env}
    )

    assert run.returncode == 2, run.stdout + run.stderr
    assert "refusing to start" in run.stdout
    assert "GEOSAGA_GATEWAY_API_KEY" in run.stdout
    assert "Traceback" not in run.stdout + run.stderr


def test_the_gateway_imports_no_geosaga_layer() -> None:
    """It stands in for another system: the API, sagas, activities and region stores are not
    its to import (geosaga's settings and key rules are)."""
    layers = ("api", "workflows", "activities", "regions")
    probe = (
        "import sys, gateway.app, gateway.operations; "
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & {set(layers)!r}))"
    )

    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)

    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"
