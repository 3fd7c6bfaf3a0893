"""Bad input, past what test_api checks: bodies over the limit however they arrive, unknown
fields in every body, quantities that are not whole positive numbers, odd ids in paths, bodies
and headers, malformed credentials and content types.

Every refusal is a 4xx in JSON whose `message` (a 422) or `detail` (anything else) names the
field or header at fault; never a 500, never a stack trace.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
from fastapi import FastAPI
from starlette.types import Message

from api.main import create_app
from foundation.settings import Settings
from regions.store import Store
from tests.helpers import TEST_API_KEY, new_key, order, stock

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)

# Every route that takes a JSON body, with a body it would take.
BODY_ROUTES: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/orders", order()),
    ("PUT", "/regions/us-east/stock/SKU-1", {"on_hand": 3}),
    ("PUT", "/carts/c-1/items/SKU-1", {"quantity": 1}),
    ("POST", "/carts/c-1/checkout", {"payment_token": "tok_ok"}),
    ("POST", "/orders/o-1/resolve", {"resolved_by": "me", "note": "done by hand"}),
    ("POST", "/codec/encode", {"payloads": []}),
    ("POST", "/codec/decode", {"payloads": []}),
]
BODY_ROUTE_IDS = [f"{method} {path}" for method, path, _ in BODY_ROUTES]


def refused(response: httpx.Response, status: int, *names: str) -> str:
    """Asserts a refusal with this status, in JSON, that names each of `names`; returns what
    it says."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json", response.headers
    body = response.json()
    said = body["message"] if status == 422 else body["detail"]
    assert isinstance(said, str), body
    for name in names:
        assert name in said, (name, said)
    assert "Traceback" not in response.text
    assert 'File "' not in response.text
    return said


async def send(
    api: httpx.AsyncClient,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str | bytes] | None = None,
    **kwargs: Any,
) -> httpx.Response:
    """One request, with a fresh Idempotency-Key unless `headers` says otherwise."""
    given: dict[str, str | bytes] = {"Idempotency-Key": new_key(), **(headers or {})}
    sent = [(name.encode(), v if isinstance(v, bytes) else v.encode()) for name, v in given.items()]
    if body is not None:
        kwargs["json"] = body
    return await api.request(method, path, headers=sent, **kwargs)


def limit_of(settings: Settings, path: str) -> int:
    return settings.codec_max_body_bytes if path.startswith("/codec") else settings.max_body_bytes


def padded(body: dict[str, Any], size: int) -> bytes:
    """`body` as JSON, padded with whitespace to `size` bytes: valid, only too long."""
    text = json.dumps(body).encode()
    return text[:-1] + b" " * (size - len(text)) + b"}"


# Bodies over the limit --------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["declared", "chunked", "understated"])
@pytest.mark.parametrize(("method", "path", "body"), BODY_ROUTES, ids=BODY_ROUTE_IDS)
async def test_a_body_over_the_limit_is_413_however_it_arrives(
    api: httpx.AsyncClient,
    settings: Settings,
    method: str,
    path: str,
    body: dict[str, Any],
    how: str,
) -> None:
    limit = limit_of(settings, path)
    content = padded(body, limit + 1)
    headers: dict[str, str | bytes] = {"Content-Type": "application/json"}
    sent: bytes | AsyncIterator[bytes] = content
    if how == "chunked":  # no Content-Length: Transfer-Encoding: chunked

        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(content), 8192):
                yield content[start : start + 8192]

        sent = chunks()
    elif how == "understated":  # a Content-Length that lies
        headers["Content-Length"] = "2"

    response = await send(api, method, path, headers=headers, content=sent)

    refused(response, 413, "request body", str(limit))


async def test_a_body_at_the_limit_is_read(
    api: httpx.AsyncClient, settings: Settings, stores: dict[str, Store]
) -> None:
    content = padded({"on_hand": 4}, settings.max_body_bytes)
    headers = {"Content-Type": "application/json"}

    response = await api.put("/regions/us-east/stock/SKU-1", content=content, headers=headers)

    assert response.status_code == 200, response.text
    assert response.json()["on_hand"] == 4


async def test_the_codec_endpoint_takes_larger_bodies(
    api: httpx.AsyncClient, settings: Settings
) -> None:
    payload = {"metadata": {"encoding": "anNvbi9wbGFpbg=="}, "data": "A" * settings.max_body_bytes}

    response = await api.post("/codec/encode", json={"payloads": [payload]})

    assert response.status_code == 200, response.text
    assert len(response.json()["payloads"]) == 1


# Unknown fields ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/orders", {**order(), "lines": [{"sku": "SKU-1", "quantity": 1, "off": 5}]},
         "lines[0].off"),
        ("PUT", "/regions/us-east/stock/SKU-1", {"on_hand": 3, "reserved": 0}, "reserved"),
        ("PUT", "/carts/c-1/items/SKU-1", {"quantity": 1, "sku": "SKU-2"}, "sku"),
        ("POST", "/carts/c-1/checkout", {"payment_token": "tok_ok", "home_region": "eu-west"},
         "home_region"),
        ("POST", "/orders/o-1/resolve", {"resolved_by": "me", "note": "n", "force": True},
         "force"),
        ("POST", "/codec/encode", {"payloads": [], "namespace": "default"}, "namespace"),
        ("POST", "/codec/decode", {"payloads": [{"data": "", "encoding": "x"}]},
         "payloads[0].encoding"),
    ],
)  # fmt: skip
async def test_unknown_fields_are_refused_in_every_body(
    api: httpx.AsyncClient, method: str, path: str, body: dict[str, Any], field: str
) -> None:
    response = await send(api, method, path, body)

    said = refused(response, 422, field)
    assert "Extra inputs are not permitted" in said


# Quantities -------------------------------------------------------------------------------------

# Written as JSON, so that what pydantic never sees (NaN, 1e400, 5000 digits) is sent too.
NOT_A_COUNT = [
    "-1", "1.5", "2.0", "1e3", "-0.0", "1e400", "NaN", "Infinity", "-Infinity",
    '"2"', "true", "false", "null", "[]", "[1]", "{}", '""',
]  # fmt: skip
TOO_MANY = ["1000001", "1" + "0" * 30]


@pytest.mark.parametrize(
    ("path", "template", "field", "zero_allowed"),
    [
        ("/orders", '{"customer_id": "c-1", "home_region": "us-east", "payment_token": "tok_ok", '
         '"lines": [{"sku": "SKU-1", "quantity": %s}]}', "lines[0].quantity", False),
        ("/carts/c-1/items/SKU-1", '{"quantity": %s}', "quantity", False),
        ("/regions/us-east/stock/SKU-1", '{"on_hand": %s}', "on_hand", True),
    ],
    ids=["order line", "cart", "stock"],
)  # fmt: skip
async def test_quantities_must_be_whole_numbers_within_bounds(
    api: httpx.AsyncClient,
    stores: dict[str, Store],
    path: str,
    template: str,
    field: str,
    zero_allowed: bool,
) -> None:
    stock(stores, {"us-east": {"SKU-1": 5}})
    method = "POST" if path == "/orders" else "PUT"
    values = NOT_A_COUNT + TOO_MANY + ([] if zero_allowed else ["0", "-0"])

    for value in values:
        response = await send(
            api,
            method,
            path,
            content=(template % value).encode(),
            headers={"Content-Type": "application/json"},
        )
        assert response.status_code == 422, (value, response.text)
        refused(response, 422, field)
    # So many digits that Python will not read them as a number at all.
    digits = await send(
        api,
        method,
        path,
        content=(template % ("9" * 5000)).encode(),
        headers={"Content-Type": "application/json"},
    )

    refused(digits, 422, "body", "too many digits")
    assert (await api.get("/carts/c-1")).json()["items"] == []
    levels = {row["sku"]: row for row in (await api.get("/regions/us-east/stock")).json()}
    assert levels["SKU-1"]["on_hand"] == 5


async def test_true_is_not_one(api: httpx.AsyncClient) -> None:
    """JSON's `true` is a bool, which Python would count as 1."""
    line = await send(
        api, "POST", "/orders", {**order(), "lines": [{"sku": "SKU-1", "quantity": True}]}
    )
    cart = await send(api, "PUT", "/carts/c-1/items/SKU-1", {"quantity": True})
    on_hand = await send(api, "PUT", "/regions/us-east/stock/SKU-1", {"on_hand": True})

    refused(line, 422, "lines[0].quantity", "valid integer")
    refused(cart, 422, "quantity", "valid integer")
    refused(on_hand, 422, "on_hand", "valid integer")
    assert (await api.get("/carts/c-1")).json()["items"] == []


# Odd ids ----------------------------------------------------------------------------------------

LONG = "x" * 65  # ids are at most 64 characters


@pytest.mark.parametrize(
    ("method", "path", "status", "named"),
    [
        # Order ids (the Idempotency-Key they were placed with).
        ("GET", "/orders/%C3%BCn%C3%AFcode", 422, "order_id"),
        ("GET", "/orders/a%00b", 422, "order_id"),
        ("GET", "/orders/a%09b", 422, "order_id"),
        ("GET", "/orders/a%0D%0ASet-Cookie:x", 422, "order_id"),
        ("GET", "/orders/%E2%80%AEevil", 422, "order_id"),  # right-to-left override
        ("GET", "/orders/a%20b", 422, "order_id"),
        ("GET", "/orders/-x", 422, "order_id"),
        ("GET", f"/orders/{LONG}", 422, "order_id"),
        ("GET", "/orders/%2E%2E", 422, "order_id"),
        ("GET", "/orders/..%5C..%5Cetc", 422, "order_id"),
        ("POST", "/orders/a%00b/cancel", 422, "order_id"),
        ("POST", "/orders/%C3%BC/retry", 422, "order_id"),
        # An encoded slash is a slash by the time routes are matched: no route has that path.
        ("GET", "/orders/a%2Fb", 404, "/orders/a/b"),
        ("POST", "/orders/..%2F..%2Fcatalog/cancel", 404, "/orders/../../catalog/cancel"),
        # Customer ids.
        ("GET", "/carts/%C3%BCn%C3%AFcode", 422, "customer"),
        ("GET", "/carts/a%0Ab", 422, "customer"),
        ("GET", f"/carts/{LONG}", 422, "customer"),
        ("DELETE", "/carts/..%5Cx/items/SKU-1", 422, "customer"),
        # SKUs: any text names a SKU, and an unknown one is not there.
        ("PUT", "/carts/c-1/items/%C5%9AKU-1", 404, "unknown SKU 'ŚKU-1'"),
        ("PUT", "/carts/c-1/items/SKU-1%00", 404, "unknown SKU"),
        ("PUT", f"/carts/c-1/items/{LONG}", 422, "sku"),
        ("DELETE", "/carts/c-1/items/%2E%2E", 404, "unknown SKU '..'"),
        ("PUT", "/regions/us-east/stock/%C5%9AKU-1", 404, "unknown SKU 'ŚKU-1'"),
        ("PUT", "/regions/us-east/stock/SKU-1%0A", 404, "unknown SKU"),
        # Regions.
        ("GET", "/regions/US-EAST/stock", 404, "unknown region 'US-EAST'"),
        ("GET", "/regions/us-east%00/stock", 404, "unknown region"),
        ("GET", "/regions/%C3%BCs-east/replication", 404, "unknown region 'üs-east'"),
        ("GET", f"/regions/{'r' * 1000}/dead-letters", 404, "unknown region"),
        ("PUT", "/regions/%2E%2E/stock/SKU-1", 404, "unknown region '..'"),
        ("POST", "/regions/us-east/dead-letters/%00/redrive", 404, "no dead letter"),
    ],
)
async def test_odd_ids_in_paths_are_refused_naming_them(
    api: httpx.AsyncClient, method: str, path: str, status: int, named: str
) -> None:
    body = {"quantity": 1} if "/items/" in path else {"on_hand": 1} if "/stock/" in path else None

    response = await send(api, method, path, body)

    refused(response, status, named)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("customer_id", "ćustomer"),
        ("customer_id", "a\x00b"),
        ("customer_id", "a\nb"),
        ("customer_id", "a\u202eb"),
        ("customer_id", "../../etc/passwd"),
        ("customer_id", "a%2Fb"),
        ("customer_id", "x" * 10_000),
        ("customer_id", ""),
        ("home_region", "üs-east"),
        ("home_region", "us-east\x00"),
        ("home_region", "r" * 33),
        ("payment_token", "tok_ök"),
        ("payment_token", "tok_ok\r\n"),
        ("payment_token", "t" * 65),
    ],
)
async def test_odd_ids_in_orders_are_refused_naming_the_field(
    api: httpx.AsyncClient, field: str, value: str
) -> None:
    response = await send(api, "POST", "/orders", {**order(), field: value})

    refused(response, 422, field)


@pytest.mark.parametrize("sku", ["ŚKU-1", "SKU-1\x00", "SKU-1 ", "s" * 10_000, ""])
async def test_odd_skus_in_order_lines_are_refused(api: httpx.AsyncClient, sku: str) -> None:
    response = await send(
        api, "POST", "/orders", {**order(), "lines": [{"sku": sku, "quantity": 1}]}
    )

    refused(response, 422, "lines[0].sku")


async def test_long_and_odd_text_in_a_resolution_is_refused(api: httpx.AsyncClient) -> None:
    long_by = await send(
        api, "POST", "/orders/o-1/resolve", {"resolved_by": "b" * 101, "note": "n"}
    )
    long_note = await send(
        api, "POST", "/orders/o-1/resolve", {"resolved_by": "me", "note": "n" * 1001}
    )
    empty = await send(api, "POST", "/orders/o-1/resolve", {"resolved_by": "", "note": ""})
    unicode = await send(api, "POST", "/orders/%C3%BC/resolve", {"resolved_by": "me", "note": "ü"})

    refused(long_by, 422, "resolved_by")
    refused(long_note, 422, "note")
    refused(empty, 422, "resolved_by", "note")
    refused(unicode, 422, "order_id")


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    return create_app(settings)


async def raw_get(app: FastAPI, raw_path: bytes) -> tuple[int, dict[str, Any]]:
    """GET a path exactly as written, `..` and all, as `curl --path-as-is` would: httpx
    resolves dot segments before it sends anything."""
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def record(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": unquote(raw_path.decode()),
        "raw_path": raw_path,
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"geosaga.test")],
        "client": ("127.0.0.1", 50000),
        "server": ("geosaga.test", 80),
    }
    await app(scope, receive, record)
    body = b"".join(message.get("body", b"") for message in sent[1:])
    return sent[0]["status"], json.loads(body)


async def test_dot_segments_in_a_path_lead_nowhere(app: FastAPI) -> None:
    async with app.router.lifespan_context(app):
        up = await raw_get(app, b"/orders/../catalog")
        around = await raw_get(app, b"/carts/../regions/us-east/stock")
        encoded = await raw_get(app, b"/orders/%2E%2E%2Fcatalog")

    assert up == (404, {"detail": "no route serves '/orders/../catalog'"})
    assert around == (404, {"detail": "no route serves '/carts/../regions/us-east/stock'"})
    assert encoded == (404, {"detail": "no route serves '/orders/../catalog'"})


# Headers ----------------------------------------------------------------------------------------

ODD_KEYS: list[str | bytes] = [
    "",
    " ",
    "a b",
    " leading-space",
    "trailing-space ",
    "a\tb",
    "x" * 65,
    "ключ".encode(),
    "ü".encode("latin-1"),
    "../x",
    "a/b",
    "%2F",
    "-x",
    "a;b",
    "a,b",
]


@pytest.mark.parametrize(
    ("path", "body"),
    [("/orders", order()), ("/carts/c-1/checkout", {"payment_token": "tok_ok"})],
    ids=["order", "checkout"],
)
async def test_a_missing_or_odd_idempotency_key_is_refused(
    api: httpx.AsyncClient, path: str, body: dict[str, Any]
) -> None:
    missing = await api.post(path, json=body)
    refused(missing, 422, "Idempotency-Key", "Field required")

    for key in ODD_KEYS:
        response = await send(api, "POST", path, body, {"Idempotency-Key": key})
        assert response.status_code == 422, (key, response.text)
        refused(response, 422, "Idempotency-Key")


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer",
        "Bearer ",
        "bearer",
        "Bearer\t" + TEST_API_KEY,
        " Bearer " + TEST_API_KEY,
        TEST_API_KEY,
        "Token " + TEST_API_KEY,
        "Basic " + base64.b64encode(f"x:{TEST_API_KEY}".encode()).decode(),
        "Bearer " + TEST_API_KEY + " extra",
        "Bearer " + TEST_API_KEY[:-1],
        "Bearer " + TEST_API_KEY + "x",
        "Bearer " + TEST_API_KEY.upper(),
        "Bearer ключ",
        "",
    ],
)
async def test_a_malformed_authorization_header_is_401_naming_it(
    api: httpx.AsyncClient, authorization: str
) -> None:
    # Non-ASCII goes as UTF-8 bytes, as a client might send it.
    headers = {b"Authorization": authorization.encode()}

    response = await api.put("/regions/us-east/stock/SKU-1", json={"on_hand": 1}, headers=headers)

    refused(response, 401, "Authorization")
    assert response.headers["WWW-Authenticate"].startswith('Bearer realm="geosaga"')


async def test_the_bearer_scheme_is_case_insensitive(api: httpx.AsyncClient) -> None:
    response = await api.put(
        "/regions/us-east/stock/SKU-1",
        json={"on_hand": 2},
        headers={"Authorization": f"bearer {TEST_API_KEY}"},
    )

    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/carts/c-1", None),
        ("PUT", "/carts/c-1/items/SKU-1", {"quantity": 1}),
        ("DELETE", "/carts/c-1/items/SKU-1", None),
        ("POST", "/carts/c-1/checkout", {"payment_token": "tok_ok"}),
    ],
)
async def test_an_empty_or_unknown_region_header_is_refused(
    api: httpx.AsyncClient, method: str, path: str, body: dict[str, Any] | None
) -> None:
    regions: list[str | bytes] = [
        "", " ", " us-east", "us-east ", "US-EAST", "us-east,eu-west", "mars",
        "üs-east".encode(), "r" * 1000,
    ]  # fmt: skip
    for region in regions:
        response = await send(api, method, path, body, {"X-Region": region})
        assert response.status_code == 422, (region, response.text)
        refused(response, 422, "header X-Region")
    assert (await api.get("/carts/c-1")).json()["items"] == []


@pytest.mark.parametrize(("method", "path", "body"), BODY_ROUTES, ids=BODY_ROUTE_IDS)
async def test_a_body_not_sent_as_json_is_415_naming_the_content_type(
    api: httpx.AsyncClient, method: str, path: str, body: dict[str, Any]
) -> None:
    content = json.dumps(body).encode()
    for media in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
                  "application/xml", "application/jsonx", "json", "*/*"]:  # fmt: skip
        response = await send(api, method, path, headers={"Content-Type": media}, content=content)
        assert response.status_code == 415, (media, response.text)
        refused(response, 415, "Content-Type", media)
    # None at all, with a body.
    none = await send(api, method, path, content=content)

    refused(none, 415, "Content-Type", "none was sent")


async def test_json_by_other_names_is_json(api: httpx.AsyncClient) -> None:
    content = json.dumps({"on_hand": 6}).encode()
    for media in [
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/vnd.geo+json",
    ]:
        response = await api.put(
            "/regions/us-east/stock/SKU-1", content=content, headers={"Content-Type": media}
        )
        assert response.status_code == 200, (media, response.text)


@pytest.mark.parametrize(("method", "path", "body"), BODY_ROUTES, ids=BODY_ROUTE_IDS)
async def test_a_body_that_is_not_a_json_object_is_refused_naming_the_body(
    api: httpx.AsyncClient, method: str, path: str, body: dict[str, Any]
) -> None:
    for content, says in [
        (b"", "Field required"),
        (b"null", "valid dictionary"),
        (b"[]", "valid dictionary"),
        (b'"text"', "valid dictionary"),
        (b"\xff\xfe\xfa", "JSON decode error"),
        (b"\xc3\x28", "not UTF-8"),
        (b"[" * 5000 + b"]" * 5000, "nested too deeply"),
        (b'{"a": 1,}', "JSON decode error"),
    ]:
        response = await send(
            api, method, path, headers={"Content-Type": "application/json"}, content=content
        )
        assert response.status_code == 422, (content[:20], response.text)
        refused(response, 422, "body", says)
