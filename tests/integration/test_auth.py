"""API keys on the real app: writes, operator calls and the codec endpoint need
`Authorization: Bearer <key>`; reads only when configured; /healthz and /metrics never. The
codec endpoint's CORS and the Web UI origin; refusing to start in production without keys."""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from api.main import create_app
from foundation.security import DEV_API_KEY, ConfigurationError
from foundation.settings import Settings
from tests.helpers import TEST_API_KEY, order

README = Path(__file__).resolve().parents[2] / "README.md"
OTHER_KEY = "geosaga-other-key-0123456789"
UI_ORIGIN_HEADERS = ("authorization", "content-type", "x-namespace")

WRITES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("POST", "/orders", order()),
    ("POST", "/orders/o-1/cancel", None),
    ("POST", "/orders/o-1/compensations/retry", None),
    ("POST", "/orders/o-1/resolve", {"resolved_by": "me", "note": "done by hand"}),
    ("POST", "/orders/o-1/retry", None),
    ("PUT", "/regions/us-east/stock/SKU-1", {"on_hand": 3}),
    ("PUT", "/carts/c-1/items/SKU-1", {"quantity": 1}),
    ("DELETE", "/carts/c-1/items/SKU-1", None),
    ("POST", "/carts/c-1/checkout", {"payment_token": "tok_ok"}),
    ("POST", "/regions/us-east/dead-letters/e-1/redrive", None),
    ("POST", "/codec/decode", {"payloads": []}),
    ("POST", "/codec/encode", {"payloads": []}),
]
READS = [
    "/catalog",
    "/regions",
    "/regions/us-east/stock",
    "/regions/us-east/replication",
    "/regions/us-east/dead-letters",
    "/carts/c-1",
]
ALWAYS_OPEN = ["/healthz", "/metrics"]

Serve = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def backend() -> str:
    """Keys are checked before any store is touched: SQLite alone is enough."""
    return "sqlite"


@pytest.fixture
def serve(settings: Settings) -> Serve:
    """The real app for the test's settings with `changes`, over httpx with no key."""

    @asynccontextmanager
    async def serving(**changes: Any) -> AsyncIterator[httpx.AsyncClient]:
        app = create_app(Settings(**{**settings.model_dump(), **changes}))
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://geosaga.test"
            ) as http,
        ):
            yield http

    return serving


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def send(
    http: httpx.AsyncClient,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    headers = {"Idempotency-Key": "auth-test", **(headers or {})}
    return await http.request(method, path, json=body, headers=headers)


@pytest.mark.parametrize(("method", "path", "body"), WRITES)
async def test_writes_without_a_key_are_401_with_a_bearer_challenge(
    serve: Serve, method: str, path: str, body: dict[str, Any] | None
) -> None:
    async with serve() as http:
        response = await send(http, method, path, body)

    assert response.status_code == 401, response.text
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="geosaga"'
    assert "Authorization: Bearer" in response.json()["detail"]


@pytest.mark.parametrize(("method", "path", "body"), WRITES)
async def test_writes_with_a_wrong_key_are_401(
    serve: Serve, method: str, path: str, body: dict[str, Any] | None
) -> None:
    async with serve() as http:
        response = await send(http, method, path, body, bearer("not-the-key-0123456789"))

    assert response.status_code == 401, response.text
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


async def test_a_key_sent_with_another_scheme_is_not_accepted(serve: Serve) -> None:
    basic = {"Authorization": "Basic " + base64.b64encode(f"x:{TEST_API_KEY}".encode()).decode()}
    async with serve() as http:
        response = await http.put(
            "/regions/us-east/stock/SKU-1", json={"on_hand": 3}, headers=basic
        )

    assert response.status_code == 401


async def test_a_key_is_checked_before_the_request_is_validated(serve: Serve) -> None:
    async with serve() as http:
        without_key = await http.post("/orders", json={"lines": "nonsense"})
        with_key = await http.post(
            "/orders", json={"lines": "nonsense"}, headers=bearer(TEST_API_KEY)
        )

    assert without_key.status_code == 401
    assert with_key.status_code == 422


async def test_any_configured_key_is_accepted_so_keys_can_rotate(serve: Serve) -> None:
    async with serve(api_keys=(SecretStr(OTHER_KEY), SecretStr(TEST_API_KEY))) as http:
        new = await http.put(
            "/regions/us-east/stock/SKU-1", json={"on_hand": 7}, headers=bearer(OTHER_KEY)
        )
        old = await http.put(
            "/regions/us-east/stock/SKU-1", json={"on_hand": 8}, headers=bearer(TEST_API_KEY)
        )
        dev = await http.put(
            "/regions/us-east/stock/SKU-1", json={"on_hand": 9}, headers=bearer(DEV_API_KEY)
        )

    assert (new.status_code, new.json()["on_hand"]) == (200, 7)
    assert (old.status_code, old.json()["on_hand"]) == (200, 8)
    # Configured keys replace the development key.
    assert dev.status_code == 401


async def test_a_key_is_compared_in_constant_time_against_every_key(
    serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hmac

    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(given: bytes, expected: bytes) -> bool:
        compared.append((given, expected))
        return real(given, expected)

    monkeypatch.setattr("foundation.security.hmac.compare_digest", spy)
    async with serve(api_keys=(SecretStr(TEST_API_KEY), SecretStr(OTHER_KEY))) as http:
        response = await http.put(
            "/regions/us-east/stock/SKU-1", json={"on_hand": 1}, headers=bearer(TEST_API_KEY)
        )

    assert response.status_code == 200
    # The first key matches, and the second is still compared.
    assert compared == [
        (TEST_API_KEY.encode(), TEST_API_KEY.encode()),
        (TEST_API_KEY.encode(), OTHER_KEY.encode()),
    ]


@pytest.mark.parametrize("path", READS)
async def test_reads_are_open_by_default_and_need_a_key_when_configured(
    serve: Serve, path: str
) -> None:
    async with serve() as http:
        open_read = await http.get(path)
    async with serve(auth_reads=True) as http:
        without_key = await http.get(path)
        with_key = await http.get(path, headers=bearer(TEST_API_KEY))

    assert open_read.status_code == 200, open_read.text
    assert without_key.status_code == 401
    assert without_key.headers["WWW-Authenticate"].startswith("Bearer")
    assert with_key.status_code == 200, with_key.text


@pytest.mark.parametrize("path", ALWAYS_OPEN)
async def test_health_and_metrics_never_need_a_key(serve: Serve, path: str) -> None:
    async with serve(auth_reads=True) as http:
        response = await http.get(path)

    assert response.status_code == 200, response.text


async def test_openapi_declares_the_bearer_scheme_and_where_it_is_needed(serve: Serve) -> None:
    async with serve() as http:
        document = (await http.get("/openapi.json")).json()
    async with serve(auth_reads=True) as http:
        strict = (await http.get("/openapi.json")).json()

    scheme = document["components"]["securitySchemes"]["ApiKey"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    paths = document["paths"]
    assert paths["/orders"]["post"]["security"] == [{"ApiKey": []}]
    assert paths["/codec/decode"]["post"]["security"] == [{"ApiKey": []}]
    assert paths["/orders"]["get"]["security"] == [{}, {"ApiKey": []}]  # optional
    assert strict["paths"]["/orders"]["get"]["security"] == [{"ApiKey": []}]
    assert "security" not in paths["/healthz"]["get"]


# Refusing to start -------------------------------------------------------------------------------


def production(**changes: Any) -> Settings:
    payload_key = SecretStr(base64.b64encode(os.urandom(32)).decode())
    return Settings(**{"environment": "production", "payload_keys": {"p1": payload_key}, **changes})


def test_the_api_refuses_to_start_in_production_without_keys() -> None:
    with pytest.raises(ConfigurationError, match="production needs API keys: set GEOSAGA_API"):
        create_app(production())


def test_the_api_refuses_to_start_in_production_without_a_payload_key() -> None:
    with pytest.raises(ConfigurationError, match="GEOSAGA_PAYLOAD_KEYS"):
        create_app(production(payload_keys={}, api_keys=(SecretStr(OTHER_KEY),)))


def test_geosaga_api_exits_with_the_reason_in_production_without_keys(tmp_path: Path) -> None:
    env = {name: value for name, value in os.environ.items() if not name.startswith("GEOSAGA_")}
    env |= {"GEOSAGA_ENVIRONMENT": "production", "GEOSAGA_DATA_DIR": str(tmp_path)}

    run = subprocess.run(
        [sys.executable, "-m", "geosaga", "api"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert run.returncode == 2, run.stdout + run.stderr
    said = " ".join(run.stdout.split())
    assert "refusing to start" in said
    assert "GEOSAGA_API_KEYS" in said


# The codec endpoint and the Web UI -------------------------------------------------------------


def ui_origin(settings: Settings) -> str:
    return settings.temporal_ui_url.rstrip("/")


async def test_the_codec_endpoint_takes_requests_from_the_web_ui_origin_in_development(
    serve: Serve, settings: Settings
) -> None:
    from_ui = {"Origin": ui_origin(settings), "X-Namespace": "default"}
    async with serve() as http:
        ui = await http.post("/codec/decode", json={"payloads": []}, headers=from_ui)
        elsewhere = await http.post(
            "/codec/decode", json={"payloads": []}, headers={"Origin": "http://evil.example"}
        )
        no_origin = await http.post("/codec/decode", json={"payloads": []})

    assert ui.status_code == 200, ui.text
    assert ui.headers["Access-Control-Allow-Origin"] == ui_origin(settings)
    assert ui.headers["Access-Control-Allow-Credentials"] == "true"
    assert elsewhere.status_code == 401
    assert "Access-Control-Allow-Origin" not in elsewhere.headers
    assert no_origin.status_code == 401


async def test_production_does_not_trust_the_web_ui_origin_unless_told_to(
    serve: Serve, settings: Settings
) -> None:
    payload_key = SecretStr(base64.b64encode(os.urandom(32)).decode())
    prod = {"environment": "production", "payload_keys": {"p1": payload_key}}
    from_ui = {"Origin": ui_origin(settings)}
    async with serve(**prod) as http:
        ui = await http.post("/codec/decode", json={"payloads": []}, headers=from_ui)
        keyed = await http.post(
            "/codec/decode",
            json={"payloads": []},
            headers={**from_ui, **bearer(TEST_API_KEY)},
        )
    async with serve(**prod, codec_trust_ui_origin=True) as http:
        trusted = await http.post("/codec/decode", json={"payloads": []}, headers=from_ui)
    async with serve(codec_trust_ui_origin=False) as http:
        untrusted_dev = await http.post("/codec/decode", json={"payloads": []}, headers=from_ui)

    assert ui.status_code == 401
    # The browser can read the refusal: the UI's origin gets CORS headers on errors too.
    assert ui.headers["Access-Control-Allow-Origin"] == ui_origin(settings)
    assert keyed.status_code == 200, keyed.text
    assert trusted.status_code == 200, trusted.text
    assert untrusted_dev.status_code == 401


async def test_the_browser_preflight_allows_the_headers_the_web_ui_sends(
    serve: Serve, settings: Settings
) -> None:
    ask = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type,x-namespace",
    }
    async with serve() as http:
        ui = await http.options("/codec/decode", headers={"Origin": ui_origin(settings), **ask})
        elsewhere = await http.options(
            "/codec/decode", headers={"Origin": "http://evil.example", **ask}
        )
        api_route = await http.options("/orders", headers={"Origin": ui_origin(settings), **ask})

    assert ui.status_code == 200, ui.text
    assert ui.headers["Access-Control-Allow-Origin"] == ui_origin(settings)
    allowed = {h.strip().lower() for h in ui.headers["Access-Control-Allow-Headers"].split(",")}
    assert set(UI_ORIGIN_HEADERS) <= allowed
    assert "POST" in ui.headers["Access-Control-Allow-Methods"]
    assert elsewhere.status_code == 400
    assert "Access-Control-Allow-Origin" not in elsewhere.headers
    # Only the codec endpoint is open to the UI's origin.
    assert "Access-Control-Allow-Origin" not in api_route.headers


# The README -------------------------------------------------------------------------------------


def test_every_write_in_the_readme_walkthrough_sends_the_development_key() -> None:
    """test_dev_stack runs these blocks against `geosaga dev`; this names a block that lacks
    the key without starting a stack."""
    text = README.read_text()
    commands = re.sub(r"\\\n\s*", " ", text)
    curls = re.findall(r"curl [^\n]*http://127\.0\.0\.1:8000[^\n]*", commands)
    writes = [c for c in curls if re.search(r"-X (POST|PUT|DELETE)", c)]

    assert len(writes) >= 10
    header = f"-H 'Authorization: Bearer {DEV_API_KEY}'"
    assert [c for c in writes if header not in c] == []
    assert DEV_API_KEY in text
