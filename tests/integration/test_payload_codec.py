"""Encrypted payloads on a real Temporal: what Temporal stores holds no payment token in plain
text (inputs, results, failures alike), the codec endpoint and the Temporal CLI decode it, the
customer id stays searchable, old keys keep reading after a rotation, and encrypted histories
replay.

"Raw" histories are fetched by a client with no codec: the events exactly as Temporal keeps
them in its database.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os

import httpx
import pytest
from google.protobuf import json_format
from pydantic import SecretStr
from temporalio.api.common.v1 import Payload
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowHistory

from foundation.codec import DecryptionError, is_encrypted
from foundation.security import DEV_API_KEY, DEV_PAYLOAD_KEY, DEV_PAYLOAD_KEY_ID
from foundation.settings import Settings
from foundation.temporal import connect
from geosaga.devserver import DevServer, temporal_cli
from geosaga.replay import Source, replay
from regions.store import Store
from regions.values import SagaStatus
from tests.helpers import new_key, order, place, stock
from workflows.contract import workflow_id
from workflows.order_saga import OrderSaga

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


async def raw_history(server: DevServer, order_id: str) -> WorkflowHistory:
    plain = await Client.connect(server.address, namespace=server.namespace)
    return await plain.get_workflow_handle(workflow_id(order_id)).fetch_history()


def stored_bytes(history: WorkflowHistory) -> bytes:
    return b"".join(event.SerializeToString() for event in history.events)


def started_input(history: WorkflowHistory) -> list[Payload]:
    return list(history.events[0].workflow_execution_started_event_attributes.input.payloads)


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("tok_ok", SagaStatus.COMPLETED),
        # Fails twice first: the gateway's failure messages name the token.
        ("tok_flaky", SagaStatus.COMPLETED),
        ("tok_decline", SagaStatus.COMPENSATED),
    ],
)
async def test_the_raw_history_holds_no_plaintext_token(
    api: httpx.AsyncClient,
    client: Client,
    stores: dict[str, Store],
    temporal_server: DevServer,
    token: str,
    expected: SagaStatus,
) -> None:
    stock(stores, {"us-east": {"SKU-1": 5}})
    saga = await place(api, client, order("us-east", [("SKU-1", 1)], token))
    history = await raw_history(temporal_server, saga.order_id)

    assert saga.status == expected
    assert token.encode() not in stored_bytes(history)
    [payload] = started_input(history)
    assert is_encrypted(payload)
    assert payload.metadata["encryption-key-id"] == DEV_PAYLOAD_KEY_ID.encode()
    scheduled = [
        event
        for event in history.events
        if event.HasField("activity_task_scheduled_event_attributes")
    ]
    assert scheduled
    for event in scheduled:
        attributes = event.activity_task_scheduled_event_attributes
        assert all(is_encrypted(p) for p in attributes.input.payloads)
        assert is_encrypted(event.user_metadata.summary)


async def test_failure_messages_are_stored_encrypted(
    api: httpx.AsyncClient,
    client: Client,
    stores: dict[str, Store],
    temporal_server: DevServer,
) -> None:
    stock(stores, {"us-east": {"SKU-1": 5}})
    saga = await place(api, client, order("us-east", [("SKU-1", 1)], "tok_flaky"))
    history = await raw_history(temporal_server, saga.order_id)

    failures = [
        event.activity_task_started_event_attributes.last_failure
        for event in history.events
        if event.HasField("activity_task_started_event_attributes")
        and event.activity_task_started_event_attributes.HasField("last_failure")
    ]
    assert failures, "tok_flaky's authorisation should have failed before it succeeded"
    for failure in failures:
        assert failure.message == "Encoded failure"
        assert failure.stack_trace == ""
        assert is_encrypted(failure.encoded_attributes)
    # Through the client's codec the saga still saw what went wrong.
    [authorise] = [s for s in saga.steps if s.name == "authorise"]
    assert authorise.attempts == 3


async def test_the_codec_endpoint_decodes_the_stored_input(
    api: httpx.AsyncClient,
    client: Client,
    stores: dict[str, Store],
    temporal_server: DevServer,
) -> None:
    stock(stores, {"us-east": {"SKU-1": 5}})
    customer = f"c-{new_key()}"
    saga = await place(api, client, order("us-east", [("SKU-1", 1)], "tok_ok", customer))
    stored = started_input(await raw_history(temporal_server, saga.order_id))
    wire = [json_format.MessageToDict(payload) for payload in stored]

    decoded = await api.post(
        "/codec/decode", json={"payloads": wire}, headers={"X-Namespace": "default"}
    )

    assert decoded.status_code == 200, decoded.text
    [payload] = decoded.json()["payloads"]
    assert base64.b64decode(payload["metadata"]["encoding"]) == b"json/plain"
    value = json.loads(base64.b64decode(payload["data"]))
    assert (value["payment_token"], value["customer_id"]) == ("tok_ok", customer)


async def test_what_the_codec_endpoint_encodes_the_saga_reads(api: httpx.AsyncClient) -> None:
    plain = {"metadata": {"encoding": _b64(b"json/plain")}, "data": _b64(b'"tok_ok"')}

    encoded = await api.post("/codec/encode", json={"payloads": [plain]})
    [sealed] = encoded.json()["payloads"]
    decoded = await api.post("/codec/decode", json={"payloads": [sealed]})

    assert encoded.status_code == 200, encoded.text
    assert base64.b64decode(sealed["metadata"]["encoding"]) == b"binary/encrypted"
    assert b"tok_ok" not in base64.b64decode(sealed["data"])
    assert decoded.json()["payloads"] == [plain]


async def test_the_codec_endpoint_refuses_what_it_cannot_decode(api: httpx.AsyncClient) -> None:
    foreign = {
        "metadata": {
            "encoding": _b64(b"binary/encrypted"),
            "encryption-key-id": _b64(b"retired"),
        },
        "data": _b64(os.urandom(40)),
    }
    not_base64 = {"metadata": {"encoding": "%%%"}, "data": ""}

    unknown_key = await api.post("/codec/decode", json={"payloads": [foreign]})
    malformed = await api.post("/codec/decode", json={"payloads": [not_base64]})

    assert unknown_key.status_code == 400
    assert "'retired', which is not among the payload keys" in unknown_key.json()["detail"]
    assert malformed.status_code == 422
    assert malformed.json()["message"].startswith("payloads[0].metadata.encoding: String should")


async def test_the_temporal_cli_decodes_through_the_codec_endpoint(
    api: httpx.AsyncClient,
    client: Client,
    stores: dict[str, Store],
    temporal_server: DevServer,
    codec_api: str,
) -> None:
    """As the README shows: `temporal workflow show --codec-endpoint … --codec-auth …`."""
    stock(stores, {"us-east": {"SKU-1": 5}})
    saga = await place(api, client, order("us-east", [("SKU-1", 1)], "tok_ok"))
    show = [
        temporal_cli(),
        "workflow",
        "show",
        "--detailed",
        "--address",
        temporal_server.address,
        "-w",
        workflow_id(saga.order_id),
    ]
    codec = ["--codec-endpoint", f"{codec_api}/codec", "--codec-auth", f"Bearer {DEV_API_KEY}"]

    without_codec = await _run(*show)
    with_codec = await _run(*show, *codec)

    assert "tok_ok" not in without_codec
    assert "binary/encrypted" in without_codec
    assert "payment_token: tok_ok" in with_codec


async def test_the_customer_id_stays_searchable_in_plain_text(
    api: httpx.AsyncClient,
    client: Client,
    stores: dict[str, Store],
    temporal_server: DevServer,
) -> None:
    """Search attributes are indexed as they are, by design: the customer id is one of them,
    and the only place it appears unencrypted."""
    stock(stores, {"us-east": {"SKU-1": 5}})
    customer = f"c-{new_key()}"
    saga = await place(api, client, order("us-east", [("SKU-1", 1)], "tok_ok", customer))
    history = await raw_history(temporal_server, saga.order_id)

    wid = workflow_id(saga.order_id)
    assert await _listed(client, f'CustomerId="{customer}"', wid) == [wid]
    without_search_attributes = []
    for event in history.events:
        copy = HistoryEvent()
        copy.CopyFrom(event)
        copy.upsert_workflow_search_attributes_event_attributes.ClearField("search_attributes")
        copy.workflow_execution_started_event_attributes.ClearField("search_attributes")
        without_search_attributes.append(copy.SerializeToString())
    assert customer.encode() in stored_bytes(history)
    assert not any(customer.encode() in event for event in without_search_attributes)


async def test_after_a_key_rotation_old_sagas_still_read(
    api: httpx.AsyncClient,
    client: Client,
    stores: dict[str, Store],
    temporal_server: DevServer,
) -> None:
    stock(stores, {"us-east": {"SKU-1": 5}})
    saga = await place(api, client, order("us-east", [("SKU-1", 1)], "tok_ok"))
    new_key_material = SecretStr(base64.b64encode(os.urandom(32)).decode())
    rotated = Settings(
        temporal_address=temporal_server.address,
        payload_keys={"2025": new_key_material, DEV_PAYLOAD_KEY_ID: SecretStr(DEV_PAYLOAD_KEY)},
    )
    retired = Settings(
        temporal_address=temporal_server.address, payload_keys={"2025": new_key_material}
    )
    wid = workflow_id(saga.order_id)

    after_rotation = await connect(rotated)
    state = await after_rotation.get_workflow_handle_for(OrderSaga.run, wid).result()
    memo = await (await after_rotation.get_workflow_handle(wid).describe()).memo()
    without_old_key = await connect(retired)

    assert state.status == SagaStatus.COMPLETED
    assert state.order_id == saga.order_id
    assert "request_sha256" in memo
    with pytest.raises(DecryptionError, match="'dev', which is not among the payload keys"):
        await without_old_key.get_workflow_handle_for(OrderSaga.run, wid).result()


async def test_an_encrypted_history_replays_with_the_keys_that_sealed_it(
    api: httpx.AsyncClient,
    client: Client,
    stores: dict[str, Store],
    temporal_server: DevServer,
) -> None:
    stock(stores, {"us-east": {"SKU-1": 5}})
    saga = await place(api, client, order("us-east", [("SKU-1", 1)], "tok_decline"))
    history = await raw_history(temporal_server, saga.order_id)
    other_key = SecretStr(base64.b64encode(os.urandom(32)).decode())

    [with_keys] = await replay([Source("server", history)], settings=Settings())
    [without] = await replay(
        [Source("server", history)], settings=Settings(payload_keys={"other": other_key})
    )

    assert with_keys.ok, with_keys.problem
    assert without.problem is not None
    assert "'dev', which is not among the payload keys" in without.problem.message


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


async def _run(*command: str) -> str:
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await process.communicate()
    assert process.returncode == 0, out.decode()
    return out.decode()


async def _listed(client: Client, query: str, expected: str) -> list[str]:
    """The workflow ids a visibility query finds, once it finds `expected` (visibility lags)."""
    for _ in range(100):
        found = [execution.id async for execution in client.list_workflows(query)]
        if expected in found:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"{query} never found {expected}")
