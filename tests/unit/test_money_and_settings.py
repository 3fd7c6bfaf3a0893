"""Money in integer minor units, and Settings parsed and validated from GEOSAGA_* variables."""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from foundation.settings import Settings
from regions.money import from_minor, to_minor
from workflows.contract import SagaOptions

# Far below the 28 significant digits of the default decimal context.
LIMIT = Decimal("1e15")
amounts = st.decimals(min_value=-LIMIT, max_value=LIMIT, places=2)
minor_units = st.integers(min_value=-(10**17), max_value=10**17)


@given(amounts)
def test_amount_survives_a_round_trip_through_minor_units(amount: Decimal) -> None:
    assert from_minor(to_minor(amount)) == amount


@given(minor_units)
def test_minor_units_survive_a_round_trip_through_amounts(minor: int) -> None:
    assert to_minor(from_minor(minor)) == minor


@given(minor_units)
def test_amounts_from_minor_units_have_exactly_two_places(minor: int) -> None:
    assert from_minor(minor).as_tuple().exponent == -2


def test_minor_units_examples() -> None:
    assert to_minor(Decimal("12.34")) == 1234
    assert to_minor(Decimal("5")) == 500
    assert to_minor(Decimal("-0.01")) == -1
    assert str(from_minor(1250)) == "12.50"


@given(amounts, st.integers(min_value=1, max_value=9))
def test_sub_cent_amounts_are_rejected(amount: Decimal, mills: int) -> None:
    with pytest.raises(ValueError, match="more precision"):
        to_minor(amount + Decimal(mills) / 1000)


@pytest.mark.parametrize("amount", ["0.001", "19.999", "-0.005", "1.0000001"])
def test_sub_cent_amount_examples_are_rejected(amount: str) -> None:
    with pytest.raises(ValueError, match="more precision"):
        to_minor(Decimal(amount))


@pytest.mark.parametrize(
    "amount", ["Infinity", "-Infinity", "NaN", "123456789012345678901234567.89"]
)
def test_what_is_not_money_is_rejected(amount: str) -> None:
    with pytest.raises(ValueError, match="not an amount of money"):
        to_minor(Decimal(amount))


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in os.environ:
        if name.upper().startswith("GEOSAGA_"):
            monkeypatch.delenv(name)


def test_regions_are_read_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEOSAGA_REGIONS", " us-east, eu-west ,,ap-south2 ")

    assert Settings().regions == ("us-east", "eu-west", "ap-south2")


def test_a_single_region_is_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEOSAGA_REGIONS", "mars")

    assert Settings().regions == ("mars",)


def test_default_regions() -> None:
    assert Settings().regions == ("us-east", "eu-west", "ap-south")


@pytest.mark.parametrize(
    "name", ["US-east", "1east", "us_east", "-east", "us east", "é", "a" + "b" * 32]
)
def test_invalid_region_names_are_rejected(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv("GEOSAGA_REGIONS", f"us-east,{name}")

    with pytest.raises(ValidationError, match="must match"):
        Settings()


def test_longest_allowed_region_name_is_32_characters(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEOSAGA_REGIONS", "a" + "b" * 31)

    assert Settings().regions == ("a" + "b" * 31,)


@pytest.mark.parametrize("value", ["", " , ,"])
def test_no_regions_is_rejected(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("GEOSAGA_REGIONS", value)

    with pytest.raises(ValidationError, match="at least one region"):
        Settings()


def test_duplicate_region_names_are_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEOSAGA_REGIONS", "us-east,eu-west,us-east")

    with pytest.raises(ValidationError, match="unique"):
        Settings()


def test_database_urls_for_unknown_regions_are_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEOSAGA_REGIONS", "us-east")
    monkeypatch.setenv("GEOSAGA_DATABASE_URLS", '{"us-east": "sqlite://", "mars": "sqlite://"}')

    with pytest.raises(ValidationError, match=r"unknown regions: \['mars'\]"):
        Settings()


def test_database_urls_override_the_template(monkeypatch: pytest.MonkeyPatch) -> None:
    url = "postgresql+psycopg://db/eu"
    monkeypatch.setenv("GEOSAGA_DATABASE_URLS", f'{{"eu-west": "{url}"}}')

    settings = Settings()

    assert settings.database_url("eu-west") == url
    assert settings.database_url("us-east") == "sqlite:///.data/us-east.db"


def test_database_url_template_fills_region_region_id_and_data_dir(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GEOSAGA_DATA_DIR", "/srv/geo")
    monkeypatch.setenv(
        "GEOSAGA_DATABASE_URL_TEMPLATE", "postgresql://h/{region_id}?dir={data_dir}&name={region}"
    )

    settings = Settings()

    assert settings.data_dir == Path("/srv/geo")
    assert settings.database_url("ap-south") == "postgresql://h/ap_south?dir=/srv/geo&name=ap-south"


def test_task_queue_is_region_dot_name_by_default() -> None:
    settings = Settings()

    assert settings.task_queue("eu-west") == "region.eu-west"
    assert settings.region_queues() == {
        "us-east": "region.us-east",
        "eu-west": "region.eu-west",
        "ap-south": "region.ap-south",
    }


def test_task_queue_prefix_can_be_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEOSAGA_REGION_TASK_QUEUE_PREFIX", "staging.region.")

    assert Settings().task_queue("us-east") == "staging.region.us-east"


def test_every_saga_option_is_a_setting_with_the_same_default() -> None:
    defaults = Settings()
    for name, field in SagaOptions.model_fields.items():
        assert getattr(defaults, name) == field.default, name
