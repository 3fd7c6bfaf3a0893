"""The Temporal Web UI, in a real headless Chromium, shows each saga path's steps, and shows
them decrypted: Temporal holds every payload encrypted, and the UI decodes them through the
API's codec endpoint (the `codec_api` fixture, which the test dev server names in
`--ui-codec-endpoint`).

Every saga runs for real (API → Temporal → region workers → region stores); then the browser
follows the order's `links.ui` to the workflow's Timeline, where the UI labels each activity
"<activity type> • <summary>", and to its User Metadata tab, where it renders the workflow's
static summary and its current details (the Markdown step table). The sagas run on SQLite
only: the region store's backend does not change what the UI shows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from temporalio.client import Client

from foundation.codec import is_encrypted
from geosaga.devserver import DevServer
from regions.store import Store
from regions.values import Allocation, Reason, SagaStatus
from tests.browser import SharedChromium, WorkflowPages, read_workflow
from tests.cluster import Cluster
from tests.helpers import new_key, order, outcome, place, stock, submit
from workflows.contract import SagaState, Stage, workflow_id

pytestmark = [
    pytest.mark.browser,
    pytest.mark.parametrize("backend", ["sqlite"], indirect=True),
]


@pytest.fixture(scope="module")
def chromium(tmp_path_factory: pytest.TempPathFactory, codec_api: str) -> Iterator[SharedChromium]:
    """The browser; payloads are encrypted, so the UI decodes them through `codec_api`."""
    shared = SharedChromium(tmp_path_factory.mktemp("chromium"))
    yield shared
    shared.close()


def row(activity: str, summary: str) -> str:
    """How the Timeline labels an activity."""
    return f"{activity} • {summary}"


class WebUI:
    """The Web UI of this test's stack, reached through the links the API gives."""

    def __init__(
        self, api: httpx.AsyncClient, client: Client, server: DevServer, chromium: SharedChromium
    ) -> None:
        self._api, self._client, self._server, self._chromium = api, client, server, chromium

    async def open(
        self,
        saga: SagaState,
        *,
        timeline: Sequence[str],
        user_metadata: Sequence[str],
        screenshot: Path | None = None,
    ) -> WorkflowPages:
        """Opens the saga through its `links.ui` and reads its Timeline and User Metadata."""
        view = await self._api.get(f"/orders/{saga.order_id}")
        assert view.status_code == 200, view.text
        link = view.json()["links"]["ui"]
        wid = workflow_id(saga.order_id)
        assert link == f"{self._server.ui_url}/namespaces/default/workflows/{wid}"
        run_id = (await self._client.get_workflow_handle(wid).describe()).run_id
        lines = f"{len(saga.lines)} line" + ("" if len(saga.lines) == 1 else "s")
        summary = (
            f"order {saga.order_id}: {lines}, {saga.total} {saga.currency}, home {saga.home_region}"
        )
        pages = await asyncio.to_thread(
            read_workflow,
            self._chromium.get(),
            link,
            timeline=timeline,
            user_metadata=[summary, *user_metadata],
            screenshot=screenshot,
        )
        assert pages.landed_on.startswith(f"{link}/{run_id}/timeline"), pages.landed_on
        return pages


@pytest.fixture
def web_ui(
    api: httpx.AsyncClient, client: Client, temporal_server: DevServer, chromium: SharedChromium
) -> WebUI:
    return WebUI(api, client, temporal_server, chromium)


def assert_absent(text: str, *unwanted: str) -> None:
    shown = [item for item in unwanted if item in text]
    assert shown == [], f"the page shows {shown}, which this saga never ran"


async def test_completed_order_shows_every_forward_step(
    api: httpx.AsyncClient,
    client: Client,
    stores: dict[str, Store],
    web_ui: WebUI,
) -> None:
    stock(stores, {"us-east": {"SKU-1": 10}})
    saga = await place(api, client, order("us-east", [("SKU-1", 2)]))
    assert saga.status == SagaStatus.COMPLETED
    assert saga.total == Decimal("25.00")

    pages = await web_ui.open(
        saga,
        timeline=[
            row("check_stock", "check stock in us-east"),
            row("reserve_stock", "reserve 2 × SKU-1 in us-east"),
            row("authorise_payment", "authorise 25.00 USD in us-east"),
            row("capture_payment", "capture 25.00 USD in us-east"),
            row("commit_stock", "commit 2 × SKU-1 in us-east"),
        ],
        user_metadata=["completed · stage done"],
    )

    assert_absent(pages.timeline, "compensate:", "release_stock", "void_payment")
    assert_absent(pages.user_metadata, "compensate:")


async def test_split_order_shows_both_regions_reserving_and_committing(
    api: httpx.AsyncClient,
    client: Client,
    stores: dict[str, Store],
    web_ui: WebUI,
) -> None:
    stock(stores, {"eu-west": {"SKU-2": 5}, "us-east": {"SKU-2": 20}, "ap-south": {}})
    saga = await place(api, client, order("eu-west", [("SKU-2", 8)]))
    assert saga.status == SagaStatus.COMPLETED
    assert sorted(saga.allocations, key=lambda a: a.region) == [
        Allocation(region="eu-west", sku="SKU-2", quantity=5),
        Allocation(region="us-east", sku="SKU-2", quantity=3),
    ]

    pages = await web_ui.open(
        saga,
        timeline=[
            row("check_stock", "check stock in eu-west"),
            row("check_stock", "check stock in us-east"),
            row("check_stock", "check stock in ap-south"),
            row("reserve_stock", "reserve 5 × SKU-2 in eu-west"),
            row("reserve_stock", "reserve 3 × SKU-2 in us-east"),
            row("authorise_payment", "authorise 192.00 USD in eu-west"),
            row("capture_payment", "capture 192.00 USD in eu-west"),
            row("commit_stock", "commit 5 × SKU-2 in eu-west"),
            row("commit_stock", "commit 3 × SKU-2 in us-east"),
        ],
        user_metadata=["completed · stage done"],
    )

    assert_absent(pages.timeline, "compensate:", "SKU-2 in ap-south")


async def test_declined_payment_shows_void_and_releases(
    api: httpx.AsyncClient,
    client: Client,
    stores: dict[str, Store],
    web_ui: WebUI,
    artifacts: Path,
) -> None:
    stock(stores, {"us-east": {"SKU-2": 2}, "ap-south": {"SKU-2": 5}})
    order_id = await submit(api, order("us-east", [("SKU-2", 4)], token="tok_decline"))
    saga = await outcome(client, order_id)
    assert saga.status == SagaStatus.COMPENSATED
    assert saga.reason == Reason.PAYMENT_DECLINED
    screenshot = artifacts / "web-ui-declined-timeline.png"

    pages = await web_ui.open(
        saga,
        timeline=[
            row("reserve_stock", "reserve 2 × SKU-2 in us-east"),
            row("reserve_stock", "reserve 2 × SKU-2 in ap-south"),
            row("authorise_payment", "authorise 96.00 USD in us-east"),
            row("void_payment", "compensate: void 96.00 USD in us-east"),
            row("release_stock", "compensate: release 2 × SKU-2 in us-east"),
            row("release_stock", "compensate: release 2 × SKU-2 in ap-south"),
        ],
        user_metadata=[
            "compensated · stage done · reason payment_declined",
            "compensate: void",
            "compensate: release",
            "payment declined: card declined",
        ],
        screenshot=screenshot,
    )

    assert_absent(pages.timeline, "capture_payment", "commit_stock")
    assert screenshot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


async def test_out_of_stock_shows_stock_checks_and_the_hold_voided(
    api: httpx.AsyncClient,
    client: Client,
    stores: dict[str, Store],
    web_ui: WebUI,
) -> None:
    stock(stores, {"us-east": {"SKU-4": 2}, "eu-west": {"SKU-4": 1}})
    saga = await place(api, client, order("eu-west", [("SKU-4", 5)]))
    assert saga.status == SagaStatus.COMPENSATED
    assert saga.reason == Reason.OUT_OF_STOCK

    pages = await web_ui.open(
        saga,
        timeline=[
            row("check_stock", "check stock in eu-west"),
            row("check_stock", "check stock in us-east"),
            row("check_stock", "check stock in ap-south"),
            # The payment hold taken alongside allocation is released again.
            row("authorise_payment", "authorise 645.00 USD in eu-west"),
            row("void_payment", "compensate: void 645.00 USD in eu-west"),
        ],
        user_metadata=["compensated · stage done · reason out_of_stock", "SKU-4 (3 of 5)"],
    )

    assert_absent(pages.timeline, "reserve_stock", "capture_payment", "commit_stock", "release")


async def test_cancelled_order_shows_compensations_of_what_it_did(
    api: httpx.AsyncClient,
    client: Client,
    stores: dict[str, Store],
    cluster: Cluster,
    web_ui: WebUI,
) -> None:
    """Cancelled once stock is reserved, so there is something to compensate.

    Cancelling right after submitting (as with tok_flaky in test_saga_paths) mostly lands
    before the saga's first step, leaving nothing for the UI to show. Here the home region is
    down: its stock check times out, the stock comes from eu-west, and the authorisation waits
    on us-east's queue, holding the saga at the authorising stage until it is cancelled.
    """
    stock(stores, {"eu-west": {"SKU-1": 5}})
    await cluster.stop("us-east")
    # tok_flaky as in test_saga_paths; with us-east down, authorisation never starts anyway.
    order_id = await submit(api, order("us-east", [("SKU-1", 2)], token="tok_flaky"))
    await until_stage(api, order_id, Stage.AUTHORISING)

    cancelled = await api.post(f"/orders/{order_id}/cancel")
    cluster.start("us-east")  # the void compensation runs there

    assert cancelled.status_code == 202, cancelled.text
    saga = await outcome(client, order_id)
    assert saga.status == SagaStatus.COMPENSATED
    assert saga.reason == Reason.CANCELLED
    assert sorted((c.name, c.region) for c in saga.compensations) == [
        ("release", "eu-west"),
        ("void", "us-east"),
    ]

    pages = await web_ui.open(
        saga,
        timeline=[
            row("check_stock", "check stock in us-east"),
            row("reserve_stock", "reserve 2 × SKU-1 in eu-west"),
            row("authorise_payment", "authorise 25.00 USD in us-east"),
            row("void_payment", "compensate: void 25.00 USD in us-east"),
            row("release_stock", "compensate: release 2 × SKU-1 in eu-west"),
        ],
        user_metadata=[
            "compensated · stage done · reason cancelled",
            "compensate: void",
            "compensate: release",
        ],
    )

    assert_absent(pages.timeline, "capture_payment", "commit_stock")


async def until_stage(
    api: httpx.AsyncClient, order_id: str, stage: Stage, timeout: float = 30.0
) -> None:
    """Polls the order until its saga reaches `stage`; fails naming the last stage seen."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    seen = None
    while True:
        response = await api.get(f"/orders/{order_id}")
        if response.status_code == 200:
            seen = response.json()["stage"]
        if seen == stage:
            return
        if loop.time() > deadline:
            pytest.fail(f"order {order_id} never reached stage {stage} in {timeout}s: {seen}")
        await asyncio.sleep(0.05)


async def test_a_compensated_order_is_found_by_search_attribute_in_the_workflow_list(
    api: httpx.AsyncClient,
    client: Client,
    stores: dict[str, Store],
    temporal_server: DevServer,
    chromium: SharedChromium,
) -> None:
    stock(stores, {"eu-west": {"SKU-1": 5}})
    customer = f"c-{new_key()}"
    declined = await place(api, client, order("eu-west", [("SKU-1", 1)], "tok_decline", customer))
    completed = await place(api, client, order("eu-west", [("SKU-1", 1)], "tok_ok", customer))
    query = f'SagaStatus="compensated" AND HomeRegion="eu-west" AND CustomerId="{customer}"'
    url = f"{temporal_server.ui_url}/namespaces/default/workflows?query={quote(query)}"

    def search() -> str:
        page = chromium.get().open(url)
        try:
            return page.wait_for_text([workflow_id(declined.order_id)])
        finally:
            page.close()

    listed = await asyncio.to_thread(search)

    assert workflow_id(completed.order_id) not in listed


async def test_the_ui_shows_the_input_decrypted_that_temporal_holds_encrypted(
    api: httpx.AsyncClient,
    client: Client,
    stores: dict[str, Store],
    temporal_server: DevServer,
    chromium: SharedChromium,
    artifacts: Path,
) -> None:
    stock(stores, {"us-east": {"SKU-1": 5}})
    customer = f"c-{new_key()}"
    saga = await place(api, client, order("us-east", [("SKU-1", 1)], "tok_ok", customer))
    wid = workflow_id(saga.order_id)
    # What Temporal keeps, read by a client without the codec.
    plain = await Client.connect(temporal_server.address)
    history = await plain.get_workflow_handle(wid).fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes
    stored = b"".join(event.SerializeToString() for event in history.events)
    page_url = (
        f"{temporal_server.ui_url}/namespaces/default/workflows/{wid}/{history.run_id}/history"
    )

    def read_input() -> str:
        page = chromium.get().open(page_url)
        try:
            text = page.wait_for_text(
                ['"payment_token": "tok_ok"', f'"customer_id": "{customer}"', "Input"]
            )
            page.screenshot(artifacts / "web-ui-decoded-input.png")
            return text
        finally:
            page.close()

    shown = await asyncio.to_thread(read_input)

    assert all(is_encrypted(payload) for payload in started.input.payloads)
    assert b"tok_ok" not in stored
    assert '"order_id": "' + saga.order_id + '"' in shown
