from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, StrictInt
from starlette.concurrency import run_in_threadpool

from api.accepted import accepted
from api.deps import CartSku, CartStoreDep, IdempotencyKey
from api.errors import BAD_INPUT, JSON_BODY, STORE_ERRORS, TEMPORAL_ERRORS, require_json
from api.schemas import ErrorBody
from api.services import Services, ServicesDep
from orders import sagas
from orders.errors import invalid
from orders.schemas import ID_PATTERN, OrderAccepted, Strict
from regions import carts
from regions.store import Store

router = APIRouter(prefix="/carts", tags=["carts"], responses={**BAD_INPUT, **STORE_ERRORS})

Customer = Annotated[str, Path(pattern=ID_PATTERN, description="The customer's id")]
_ERRORS: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody}, 409: {"model": ErrorBody}}


class CartItem(BaseModel):
    sku: str
    quantity: int


class CartView(BaseModel):
    customer_id: str
    region: str
    items: list[CartItem]


class Quantity(Strict):
    quantity: Annotated[StrictInt, Field(gt=0, examples=[2])]


class Checkout(Strict):
    payment_token: Annotated[str, Field(pattern=r"^[A-Za-z0-9_]{1,64}$", examples=["tok_ok"])]


@router.get("/{customer}", response_model=CartView)
async def get_cart(customer: Customer, store: CartStoreDep, services: ServicesDep) -> CartView:
    """The cart as the region asked has merged it from every region's edits."""
    snapshot = await run_in_threadpool(carts.read, store, customer, _window(services))
    return _view(customer, store, snapshot.items)


@router.put(
    "/{customer}/items/{sku}",
    response_model=CartView,
    responses={**_ERRORS, **JSON_BODY},
    dependencies=[Depends(require_json)],
)
async def set_item(
    customer: Customer,
    store: CartStoreDep,
    sku: CartSku,
    quantity: Quantity,
    services: ServicesDep,
) -> CartView:
    """Sets a SKU's quantity in the cart, written only to the region asked."""
    if quantity.quantity > services.settings.max_quantity:
        raise RequestValidationError(
            [invalid(("body", "quantity"), f"at most {services.settings.max_quantity} units")]
        )
    items = await run_in_threadpool(
        carts.set_quantity, store, customer, sku, quantity.quantity, _window(services)
    )
    return _view(customer, store, items)


@router.delete("/{customer}/items/{sku}", response_model=CartView, responses=_ERRORS)
async def remove_item(
    customer: Customer, store: CartStoreDep, sku: CartSku, services: ServicesDep
) -> CartView:
    """Removes a SKU from the cart, written only to the region asked."""
    items = await run_in_threadpool(
        carts.set_quantity, store, customer, sku, None, _window(services)
    )
    return _view(customer, store, items)


@router.post(
    "/{customer}/checkout",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=OrderAccepted,
    responses={**_ERRORS, **TEMPORAL_ERRORS, **JSON_BODY},
    dependencies=[Depends(require_json)],
)
async def checkout(
    customer: Customer,
    idempotency_key: IdempotencyKey,
    services: ServicesDep,
    response: Response,
    body: Annotated[Checkout, Body()],
    store: CartStoreDep,
) -> OrderAccepted:
    """Orders the merged cart of the region asked, with that region as home; the order's saga
    takes the checked-out items out of the cart once it completes."""
    saga_status, started = await sagas.checkout(
        services.client,
        services.settings,
        services.stores,
        store.region,
        customer,
        idempotency_key,
        body.payment_token,
    )
    return accepted(response, services, idempotency_key, saga_status, started=started)


def _window(services: Services) -> int:
    return int(services.settings.cart_removal_window_seconds * 1000)


def _view(customer: str, store: Store, items: dict[str, int]) -> CartView:
    return CartView(
        customer_id=customer,
        region=store.region,
        items=[CartItem(sku=sku, quantity=quantity) for sku, quantity in items.items()],
    )
