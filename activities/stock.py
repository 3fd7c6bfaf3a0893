"""Stock activities of one region: check, reserve, release (compensation) and commit."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlmodel import Session, select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.contract import (
    ActivityName,
    ErrorType,
    ReservationKey,
    ReserveStock,
    StepOutcome,
    StockAvailability,
    StockCheck,
)
from activities.idempotency import once
from activities.region_bound import RegionBound, refusal, with_attempt
from regions import events, inventory
from regions.models import Reservation, ReservationLine, utcnow
from regions.values import ReservationStatus, Shortage, StockLine


class StockActivities(RegionBound):
    """Bound to one region's store; registered only on that region's task queue."""

    def all(self) -> Sequence[Callable[..., Any]]:
        return [self.check_stock, self.reserve_stock, self.release_stock, self.commit_stock]

    @activity.defn(name=ActivityName.CHECK_STOCK, no_thread_cancel_exception=True)
    def check_stock(self, request: StockCheck) -> StockAvailability:
        with self._store.reading() as session:
            levels = inventory.available(session, request.skus)
            elsewhere = inventory.replicated_available(session, request.skus, self.region)
        return StockAvailability(region=self.region, available=levels, elsewhere=elsewhere)

    @activity.defn(name=ActivityName.RESERVE_STOCK, no_thread_cancel_exception=True)
    def reserve_stock(self, request: ReserveStock) -> StepOutcome:
        outcome = once(
            self._store, "reserve", request.key, lambda session: self._reserve(session, request)
        )
        outcome = with_attempt(outcome)
        if outcome.status == ReservationStatus.REJECTED:
            raise refusal(outcome, ErrorType.OUT_OF_STOCK)
        if outcome.repeated and outcome.status == ReservationStatus.HELD:
            outcome = self._unless_released(outcome)
        return outcome

    def _unless_released(self, outcome: StepOutcome) -> StepOutcome:
        """A repeat says so when a release gave the units back since: a saga rerun from before
        its compensation must not carry on with units it no longer holds."""
        with self._store.reading() as session:
            reservation = session.get(Reservation, outcome.key)
        if reservation is None or reservation.status != ReservationStatus.RELEASED:
            return outcome
        return outcome.model_copy(
            update={"status": ReservationStatus.RELEASED, "message": "released since it was taken"}
        )

    @activity.defn(name=ActivityName.RELEASE_STOCK, no_thread_cancel_exception=True)
    def release_stock(self, request: ReservationKey) -> StepOutcome:
        outcome = once(
            self._store, "release", request.key, lambda session: self._release(session, request)
        )
        return with_attempt(outcome)

    @activity.defn(name=ActivityName.COMMIT_STOCK, no_thread_cancel_exception=True)
    def commit_stock(self, request: ReservationKey) -> StepOutcome:
        outcome = once(
            self._store, "commit", request.key, lambda session: self._commit(session, request)
        )
        return with_attempt(outcome)

    def _reserve(self, session: Session, request: ReserveStock) -> StepOutcome:
        existing = session.get(Reservation, request.key)
        if existing is not None:
            # Only a release that overtook this reservation leaves a row behind.
            return self._outcome(
                request.key,
                existing.status,
                message="released before it was taken; nothing reserved",
            )
        rows = inventory.lock_stock(session, (line.sku for line in request.lines))
        shortages = [
            Shortage(
                sku=line.sku,
                requested=line.quantity,
                available=rows[line.sku].available if line.sku in rows else 0,
            )
            for line in request.lines
            if line.sku not in rows or rows[line.sku].available < line.quantity
        ]
        if shortages:
            session.add(
                Reservation(
                    key=request.key, order_id=request.order_id, status=ReservationStatus.REJECTED
                )
            )
            self._publish(
                session,
                events.ReservationRejected(
                    region=self.region,
                    order_id=request.order_id,
                    shortages=shortages,
                ),
            )
            return self._outcome(
                request.key,
                ReservationStatus.REJECTED,
                shortages=shortages,
                message=f"not enough stock in {self.region}: "
                + ", ".join(f"{s.sku} ({s.available} of {s.requested})" for s in shortages),
            )
        session.add(
            Reservation(key=request.key, order_id=request.order_id, status=ReservationStatus.HELD)
        )
        session.flush()
        for line in request.lines:
            row = rows[line.sku]
            row.reserved += line.quantity
            row.updated_at = utcnow()
            session.add(row)
            session.add(
                ReservationLine(reservation_key=request.key, sku=line.sku, quantity=line.quantity)
            )
        self._publish(
            session,
            events.StockReserved(
                region=self.region, order_id=request.order_id, lines=request.lines
            ),
        )
        inventory.publish_levels(session, self.region, rows.values(), "reserved", request.order_id)
        return self._outcome(request.key, ReservationStatus.HELD, lines=request.lines)

    def _release(self, session: Session, request: ReservationKey) -> StepOutcome:
        reservation = session.get(Reservation, request.key)
        if reservation is None:
            # The reservation has not arrived (or never will): leave a tombstone that stops it.
            session.add(
                Reservation(
                    key=request.key, order_id=request.order_id, status=ReservationStatus.RELEASED
                )
            )
            self._publish(
                session,
                events.StockReleased(region=self.region, order_id=request.order_id, lines=[]),
            )
            return self._outcome(
                request.key, ReservationStatus.RELEASED, message="nothing was reserved"
            )
        if reservation.status == ReservationStatus.COMMITTED:
            raise ApplicationError(
                f"reservation {request.key} is committed and cannot be released",
                type=ErrorType.INVALID_TRANSITION,
                non_retryable=True,
            )
        if reservation.status != ReservationStatus.HELD:
            return self._outcome(request.key, reservation.status, message="nothing was held")
        lines = self._settle(session, reservation, ReservationStatus.RELEASED, consume=False)
        self._publish(
            session,
            events.StockReleased(region=self.region, order_id=request.order_id, lines=lines),
        )
        return self._outcome(request.key, ReservationStatus.RELEASED, lines=lines)

    def _commit(self, session: Session, request: ReservationKey) -> StepOutcome:
        reservation = session.get(Reservation, request.key)
        if reservation is None or reservation.status != ReservationStatus.HELD:
            status = "missing" if reservation is None else reservation.status
            raise ApplicationError(
                f"reservation {request.key} is {status}; only a held reservation can be committed",
                type=ErrorType.INVALID_TRANSITION,
                non_retryable=True,
            )
        lines = self._settle(session, reservation, ReservationStatus.COMMITTED, consume=True)
        self._publish(
            session,
            events.StockCommitted(region=self.region, order_id=request.order_id, lines=lines),
        )
        return self._outcome(request.key, ReservationStatus.COMMITTED, lines=lines)

    def _settle(
        self,
        session: Session,
        reservation: Reservation,
        status: ReservationStatus,
        *,
        consume: bool,
    ) -> list[StockLine]:
        """Takes the held units out of `reserved`, and out of `on_hand` too when consumed."""
        held = session.exec(
            select(ReservationLine).where(ReservationLine.reservation_key == reservation.key)
        ).all()
        rows = inventory.lock_stock(session, (line.sku for line in held))
        for line in held:
            row = rows[line.sku]
            row.reserved -= line.quantity
            if consume:
                row.on_hand -= line.quantity
            row.updated_at = utcnow()
            session.add(row)
        reservation.status = status
        reservation.updated_at = utcnow()
        session.add(reservation)
        inventory.publish_levels(
            session, self.region, rows.values(), str(status), reservation.order_id
        )
        return [StockLine(sku=line.sku, quantity=line.quantity) for line in held]
