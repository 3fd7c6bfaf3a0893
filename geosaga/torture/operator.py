"""What a person on call does, through the same doors a person would: the API, the payment
gateway's console, and (by mistake, on purpose) Temporal itself. The workload acts as this
operator during the run; quiesce acts as it until nothing is left to do."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from geosaga.torture.clientlog import ClientLog, Exchange, LoggedClient
from workflows.contract import StepStatus, workflow_id

ACTOR = "operator"
RESOLVER = "torture-operator"
# Temporal's refusals of a terminate, logged as the HTTP answers they amount to.
_REFUSALS = {RPCStatusCode.NOT_FOUND: 404, RPCStatusCode.FAILED_PRECONDITION: 409}


@dataclass(frozen=True)
class Sent:
    """An order the workload sent (POST /orders or a checkout), and how."""

    order_id: str
    token: str
    actor: str
    body: dict[str, Any] | None


class Operator:
    def __init__(
        self,
        api: LoggedClient,
        gateway: LoggedClient,
        temporal: Client,
        sent: dict[str, Sent],
    ) -> None:
        self.api = api
        self.gateway = gateway
        self.temporal = temporal
        self.sent = sent

    @property
    def log(self) -> ClientLog:
        return self.api.log

    async def tend(self) -> int:
        """Helps every saga that waits for a person; returns how many it found."""
        listed = await self.api.call(ACTOR, "GET", "/orders?status=needs_attention&limit=200")
        if listed.status != 200 or not isinstance(listed.answer, list):
            return 0
        for summary in listed.answer:
            await self.help(str(summary["order_id"]))
        return len(listed.answer)

    async def help(self, order_id: str) -> None:
        """A hold that cannot be voided (tok_void_fail) is released in the gateway's console,
        then the saga is told so (resolve); any other stuck compensation is retried now."""
        view = await self.api.call(ACTOR, "GET", f"/orders/{order_id}")
        if view.status != 200 or not isinstance(view.answer, dict):
            return
        stuck = [
            c for c in view.answer.get("compensations", []) if c["status"] == StepStatus.RETRYING
        ]
        if not stuck:
            return
        sent = self.sent.get(order_id)
        unvoidable = sent is not None and sent.token == "tok_void_fail"
        if unvoidable and all(c["name"] == "void" for c in stuck):
            # As a person would: resolve only once the hold is seen released.
            if await self.release_hold(order_id, str(view.answer["home_region"])):
                await self.api.call(
                    ACTOR,
                    "POST",
                    f"/orders/{order_id}/resolve",
                    body={
                        "resolved_by": RESOLVER,
                        "note": "released the hold in the gateway console",
                    },
                )
            return
        await self.api.call(ACTOR, "POST", f"/orders/{order_id}/compensations/retry")

    async def release_hold(self, order_id: str, home: str) -> bool:
        """Voids the order's open authorisation in the gateway's console; whether none is left
        open (False when the console could not be read or would not release it)."""
        reference = f"{workflow_id(order_id)}/authorise/{home}"
        found = await self.gateway.call(
            ACTOR, "GET", f"/authorisations?reference={quote(reference, safe='')}"
        )
        if found.status != 200 or not isinstance(found.answer, dict):
            return False
        released = True
        for hold in found.answer.get("authorisations", []):
            if hold.get("status") == "authorised":
                done = await self.gateway.call(
                    ACTOR, "POST", f"/console/authorisations/{hold['id']}/release"
                )
                released = released and done.status == 200
        return released

    async def rerun(self, order_id: str) -> Exchange:
        return await self.api.call(ACTOR, "POST", f"/orders/{order_id}/retry")

    async def terminate(self, order_id: str) -> bool:
        """Terminates the saga in Temporal, as a person clearing the wrong workflow would."""
        exchange = self.log.send(ACTOR, "TERMINATE", f"temporal:terminate/{workflow_id(order_id)}")
        try:
            await self.temporal.get_workflow_handle(workflow_id(order_id)).terminate(
                reason="torture: an operator's mistake"
            )
        except RPCError as error:
            # Temporal's refusal (the saga already ended) is an answer; anything else is not.
            status = _REFUSALS.get(error.status)
            self.log.end(exchange, status, error=f"RPCError ({error.status.name}): {error}")
            return False
        self.log.end(exchange, 200)
        return True

    async def redrive(self, region: str) -> int:
        """Re-drives every dead letter of the region; returns how many are left."""
        listed = await self.api.call(ACTOR, "GET", f"/regions/{region}/dead-letters")
        if listed.status != 200 or not isinstance(listed.answer, list):
            return -1
        left = 0
        for letter in listed.answer:
            event = letter["event_id"]
            done = await self.api.call(
                ACTOR, "POST", f"/regions/{region}/dead-letters/{event}/redrive"
            )
            left += done.status != 200
        return left
