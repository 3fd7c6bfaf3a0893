"""The floor's activity: it does nothing, so its cost is Temporal's alone."""

from temporalio import activity

from activities.contract import ActivityName


@activity.defn(name=ActivityName.NOOP)
async def noop() -> None:
    return None
