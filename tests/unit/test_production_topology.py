"""docker-compose.yml, checked without a Docker engine: it is a valid Compose file (the
Compose Specification's JSON schema, vendored in tests/data), every variable it gives a geosaga
service is one the settings model reads and makes valid production settings, every region in
the catalog has a worker and a database, the payment gateway has a database of its own and
every worker calls it, Prometheus scrapes the API and every worker, and the services start in
order."""

from __future__ import annotations

import json
import os
import re
import shlex
import tomllib
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from jsonschema import Draft7Validator
from sqlalchemy.engine import make_url

from foundation.security import api_keys, gateway_key, payload_keyring
from foundation.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
SCHEMA = ROOT / "tests" / "data" / "compose-spec.json"
PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"

# What an operator supplies (README, "Production"); none of it is in the file.
SECRETS = {
    "GEOSAGA_API_KEYS": "compose-test-key-0123456789",
    "GEOSAGA_PAYLOAD_KEYS": '{"2026-01": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="}',
    "GEOSAGA_DB_PASSWORD": "regions-password",
    "GEOSAGA_GATEWAY_API_KEY": "compose-gateway-key-0123456789",
    "TEMPORAL_DB_PASSWORD": "temporal-password",
}
SETTINGS_PREFIX = "GEOSAGA_"
INTERPOLATION = re.compile(
    r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?])?(?P<arg>[^}]*)\}"
)


class MissingVariable(Exception):
    pass


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?error}`, `$$`."""

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group("name"), match.group("op"), match.group("arg")
        present = name in env and (env[name] != "" or not (op or "").startswith(":"))
        if present:
            return env[name]
        if op in (":?", "?"):
            raise MissingVariable(f"{name}: {arg}")
        return arg if op in (":-", "-") else ""

    return INTERPOLATION.sub(substitute, value)


@cache
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def services() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose()["services"]
    return found


def geosaga_services() -> dict[str, dict[str, Any]]:
    """The services that run the app's own image (built from the Dockerfile)."""
    return {name: service for name, service in services().items() if "build" in service}


def temporal_services() -> dict[str, dict[str, Any]]:
    """The app's services that talk to Temporal: all but the payment gateway, which stands in
    for another system and shares nothing with them but the image."""
    return {name: s for name, s in geosaga_services().items() if command(s) != ["gateway"]}


def environment(service: dict[str, Any], env: dict[str, str] | None = None) -> dict[str, str]:
    raw = service.get("environment", {})
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) for item in raw)
    return {
        name: interpolate(str(value), SECRETS if env is None else env)
        for name, value in raw.items()
    }


def settings_of(service: dict[str, Any]) -> Settings:
    """The settings the service's process reads: its environment and nothing else."""
    with pytest.MonkeyPatch.context() as patch:
        for name in os.environ:
            if name.startswith(SETTINGS_PREFIX):
                patch.delenv(name)
        for name, value in environment(service).items():
            patch.setenv(name, value)
        return Settings()


def command(service: dict[str, Any]) -> list[str]:
    given = service.get("command", [])
    return shlex.split(given) if isinstance(given, str) else [str(part) for part in given]


def workers() -> dict[str, str]:
    """Region → the worker service that runs it."""
    found: dict[str, str] = {}
    for name, service in geosaga_services().items():
        args = command(service)
        if args[:1] == ["worker"]:
            region = args[args.index("--region") + 1]
            assert region not in found, f"{region} has two worker services"
            found[region] = name
    return found


def test_the_file_is_a_valid_compose_file() -> None:
    schema = json.loads(SCHEMA.read_text())
    Draft7Validator.check_schema(schema)
    errors = sorted(Draft7Validator(schema).iter_errors(compose()), key=str)

    assert errors == [], "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_the_schema_catches_a_broken_file() -> None:
    """The vendored schema is the real one: it refuses what Compose refuses."""
    schema = json.loads(SCHEMA.read_text())
    broken = {"services": {"api": {"image": "geosaga", "depends_on": {"x": {"condition": 1}}}}}

    assert not Draft7Validator(schema).is_valid(broken)
    assert not Draft7Validator(schema).is_valid({"services": {"api": {"restart": ["no"]}}})


def test_every_geosaga_variable_is_a_setting() -> None:
    fields = set(Settings.model_fields)
    for name, service in geosaga_services().items():
        for variable in service.get("environment", {}):
            assert variable.startswith(SETTINGS_PREFIX), f"{name}: {variable} is not GEOSAGA_*"
            field = variable.removeprefix(SETTINGS_PREFIX).lower()
            assert field in fields, f"{name}: {variable} is not read by foundation/settings.py"


def test_every_geosaga_service_gets_valid_production_settings() -> None:
    for name, service in temporal_services().items():
        settings = settings_of(service)

        assert settings.environment == "production", name
        # What `geosaga api`, `worker` and `setup` check before they start.
        assert api_keys(settings) == (SECRETS["GEOSAGA_API_KEYS"],), name
        assert payload_keyring(settings).current == "2026-01", name
        assert settings.temporal_address == "temporal:7233", name


def test_secrets_come_from_the_environment_only() -> None:
    secrets = ("GEOSAGA_API_KEYS", "GEOSAGA_PAYLOAD_KEYS")
    for name, service in temporal_services().items():
        raw = service["environment"]
        for variable in secrets:
            assert re.fullmatch(rf"\$\{{{variable}:\?[^}}]+\}}", raw[variable]), (name, variable)
        with pytest.raises(MissingVariable, match="GEOSAGA_API_KEYS"):
            environment(service, {key: v for key, v in SECRETS.items() if key not in secrets})


def test_every_region_has_a_worker_and_a_database() -> None:
    catalogs = {name: settings_of(s).regions for name, s in temporal_services().items()}
    assert len(set(catalogs.values())) == 1, catalogs
    regions = next(iter(catalogs.values()))
    database_server = services()["regions-db"]
    databases = environment(database_server)["REGION_DATABASES"].split()
    user = environment(database_server)["POSTGRES_USER"]

    assert set(workers()) == set(regions)
    for region in regions:
        for name, service in temporal_services().items():
            url = make_url(settings_of(service).database_url(region))
            assert url.get_backend_name() == "postgresql", (name, region)
            assert (url.host, url.username) == ("regions-db", user), (name, region)
            assert url.database in databases, (name, region, url.database)
    assert len(
        {make_url(settings_of(geosaga_services()["api"]).database_url(r)).database for r in regions}
    ) == len(regions)


def test_the_gateway_keeps_its_own_database_and_every_worker_calls_it() -> None:
    service = services()["gateway"]
    gateway = settings_of(service)
    database_server = environment(services()["regions-db"])
    url = make_url(gateway.gateway_database())

    assert command(service) == ["gateway"]
    assert gateway.environment == "production"
    # What `geosaga gateway` checks before it starts.
    assert gateway_key(gateway) == SECRETS["GEOSAGA_GATEWAY_API_KEY"]
    assert gateway.gateway_host == "0.0.0.0"
    assert url.get_backend_name() == "postgresql"
    assert (url.host, url.username) == ("regions-db", database_server["POSTGRES_USER"])
    assert url.database == database_server["GATEWAY_DATABASE"]
    assert url.database not in database_server["REGION_DATABASES"].split()
    assert set(workers().values()) == {
        name for name, s in temporal_services().items() if command(s)[:1] == ["worker"]
    }
    for region, name in workers().items():
        settings = settings_of(services()[name])
        assert settings.gateway_url == f"http://gateway:{gateway.gateway_port}", region
        assert gateway_key(settings) == gateway_key(gateway), region
    for name in ["gateway", *workers().values()]:
        raw = services()[name]["environment"]
        assert re.fullmatch(
            r"\$\{GEOSAGA_GATEWAY_API_KEY:\?[^}]+\}", raw["GEOSAGA_GATEWAY_API_KEY"]
        )
        with pytest.raises(MissingVariable, match="GEOSAGA_GATEWAY_API_KEY"):
            environment(
                services()[name],
                {key: v for key, v in SECRETS.items() if key != "GEOSAGA_GATEWAY_API_KEY"},
            )
    creates = (ROOT / "deploy" / "postgres" / "create-region-databases.sh").read_text()
    assert "$REGION_DATABASES ${GATEWAY_DATABASE:-}" in creates


def test_workers_serve_metrics_and_prometheus_scrapes_them_and_the_api() -> None:
    prometheus = yaml.safe_load(PROMETHEUS.read_text())
    targets: set[tuple[str, int]] = set()
    for job in prometheus["scrape_configs"]:
        for discovery in job.get("dns_sd_configs", []):
            targets |= {(host, discovery["port"]) for host in discovery["names"]}
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                host, port = target.rsplit(":", 1)
                targets.add((host, int(port)))
    api = settings_of(services()["api"])

    assert ("api", api.api_port) in targets
    assert api.api_host == "0.0.0.0"
    for region, name in workers().items():
        settings = settings_of(services()[name])
        assert settings.worker_metrics_host == "0.0.0.0", region
        assert settings.worker_metrics_port is not None, region
        assert (name, settings.worker_metrics_port) in targets, region
    prometheus_service = services()["prometheus"]
    assert any(PROMETHEUS.name in volume for volume in prometheus_service["volumes"])


def test_services_start_in_order_and_report_health() -> None:
    def after(name: str) -> dict[str, str]:
        return {
            dependency: condition["condition"]
            for dependency, condition in services()[name].get("depends_on", {}).items()
        }

    assert after("temporal-schema") == {"temporal-db": "service_healthy"}
    assert after("temporal") == {"temporal-schema": "service_completed_successfully"}
    assert after("temporal-namespace") == {"temporal": "service_healthy"}
    assert after("temporal-ui") == {"temporal": "service_healthy"}
    assert after("geosaga-setup") == {"temporal-namespace": "service_completed_successfully"}
    assert after("api") == {
        "geosaga-setup": "service_completed_successfully",
        "regions-db": "service_healthy",
    }
    assert after("gateway") == {"regions-db": "service_healthy"}
    for name in workers().values():
        assert after(name) == {
            "geosaga-setup": "service_completed_successfully",
            "regions-db": "service_healthy",
            "gateway": "service_healthy",
        }, name
    assert set(after("prometheus")) == {"api", *workers().values()}
    long_running = ["temporal-db", "regions-db", "temporal", "gateway", "api", *workers().values()]
    for name in long_running:
        assert "healthcheck" in services()[name], name
    assert command(services()["api"]) == ["api"]
    assert command(services()["geosaga-setup"]) == ["setup"]
    assert command(services()["gateway"]) == ["gateway"]


def test_the_image_runs_the_geosaga_command() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()

    assert 'ENTRYPOINT ["geosaga"]' in dockerfile
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = [
        name.rstrip("*") for name in project["tool"]["setuptools"]["packages"]["find"]["include"]
    ]
    assert "geosaga" in packages
    for package in packages:
        assert f"COPY {package} {package}" in dockerfile, package
    for name, service in geosaga_services().items():
        assert service["build"] == ".", name
        assert urlsplit(f"//{service['image']}").netloc, name


def test_every_setting_is_documented_with_its_default() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `GEOSAGA_")]
    documented = {name for row in rows for name in re.findall(r"`(GEOSAGA_[A-Z0-9_]+)`", row)}

    for field in Settings.model_fields:
        assert f"GEOSAGA_{field.upper()}" in documented, f"README, Configuration: {field}"
