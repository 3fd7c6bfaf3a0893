from __future__ import annotations

import logging

from fastapi import APIRouter

from foundation.settings import GatewayFaults
from gateway.state import StateDep

router = APIRouter(prefix="/faults", tags=["faults"])
log = logging.getLogger(__name__)


@router.get("")
async def faults_now(state: StateDep) -> GatewayFaults:
    """The faults injected into writes now."""
    return state.faults.spec


@router.put("")
async def set_faults(spec: GatewayFaults, state: StateDep) -> GatewayFaults:
    """Set the faults injected into writes (`{}`: none); a seed restarts its draws."""
    state.faults.set(spec)
    log.warning("faults now: %s", spec.model_dump_json(exclude_defaults=True) or "none")
    return spec
