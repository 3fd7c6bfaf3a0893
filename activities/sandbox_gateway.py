"""The bundled sandbox gateway: behaves by token so anyone can try each saga path.

`tok_ok` approves; `tok_decline` is declined; `tok_flaky` fails transiently twice, then
approves; `tok_void_fail` approves but can never be voided. Any other token is declined.
Its ledger is a table of its own, written in transactions separate from the activity's,
as an external gateway's would be.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from decimal import Decimal

from sqlalchemy import DateTime, Table
from sqlmodel import Field, Session, SQLModel, select

from activities.gateway import GatewayAuthorisation, GatewayRejected, GatewayUnavailable
from regions.migrate import schema_lock
from regions.models import utcnow
from regions.money import to_minor
from regions.store import Store

TOKENS = ("tok_ok", "tok_decline", "tok_flaky", "tok_void_fail")
FLAKY_FAILURES = 2


class SandboxPayment(SQLModel, table=True):
    __tablename__ = "sandbox_payment"

    key: str = Field(primary_key=True, max_length=200)
    ref: str = Field(unique=True, max_length=100)
    token: str = Field(max_length=64)
    amount_minor: int
    currency: str = Field(max_length=3)
    status: str = Field(max_length=16)
    calls: int = 0
    updated_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))


class SandboxGateway:
    def __init__(self, store: Store) -> None:
        self._store = store
        # Under the schema lock: the region's other workers may be creating it right now.
        with schema_lock(store.engine) as connection:
            SQLModel.metadata.create_all(connection, tables=[_sandbox_table()])

    def authorise(
        self, *, key: str, token: str, amount: Decimal, currency: str
    ) -> GatewayAuthorisation:
        with self._store.transaction() as session:
            payment = session.get(SandboxPayment, key)
            if payment is None:
                payment = SandboxPayment(
                    key=key,
                    ref="sbx_" + hashlib.sha256(key.encode()).hexdigest()[:24],
                    token=token,
                    amount_minor=to_minor(amount),
                    currency=currency,
                    status="pending",
                )
            payment.calls += 1
            if payment.status == "pending":
                payment.status = _decide(token, payment.calls)
            payment.updated_at = utcnow()
            session.add(payment)
            status, ref = payment.status, payment.ref
        if status == "pending":
            raise GatewayUnavailable(f"sandbox: {token} fails transiently (call {payment.calls})")
        if status == "declined":
            reason = "card declined" if token == "tok_decline" else f"unknown sandbox token {token}"
            return GatewayAuthorisation(approved=False, decline_reason=reason)
        return GatewayAuthorisation(approved=True, ref=ref)

    def void(self, ref: str) -> None:
        with self._store.transaction() as session:
            payment = self._by_ref(session, ref)
            if payment.token == "tok_void_fail":
                raise GatewayUnavailable("sandbox: a tok_void_fail authorisation cannot be voided")
            if payment.status == "captured":
                raise GatewayRejected(f"{ref} is captured; a captured payment cannot be voided")
            payment.status = "voided"
            payment.updated_at = utcnow()
            session.add(payment)

    def capture(self, ref: str, amount: Decimal) -> str:
        with self._store.transaction() as session:
            payment = self._by_ref(session, ref)
            if payment.status not in ("authorised", "captured"):
                raise GatewayRejected(f"{ref} is {payment.status}; only authorised can be captured")
            if to_minor(amount) > payment.amount_minor:
                raise GatewayRejected(f"cannot capture {amount}: more than was authorised")
            payment.status = "captured"
            payment.updated_at = utcnow()
            session.add(payment)
        return ref.replace("sbx_", "sbx_cap_", 1)

    @staticmethod
    def _by_ref(session: Session, ref: str) -> SandboxPayment:
        payment = session.exec(select(SandboxPayment).where(SandboxPayment.ref == ref)).first()
        if payment is None:
            raise GatewayRejected(f"no sandbox authorisation {ref}")
        return payment


def _decide(token: str, calls: int) -> str:
    if token == "tok_flaky" and calls <= FLAKY_FAILURES:
        return "pending"
    if token in ("tok_ok", "tok_flaky", "tok_void_fail"):
        return "authorised"
    return "declined"


def _sandbox_table() -> Table:
    table: Table = SandboxPayment.__table__  # type: ignore[attr-defined]
    return table
