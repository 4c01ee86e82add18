"""What a starting server makes of the sandboxes it finds: the store's live ones that the
runtime still holds are adopted, the rest are marked killed.

A server restart keeps sandboxes running, and a server killed in the middle of an operation is
safe too: the runtime finishes or undoes what it was doing to each sandbox, and `adopt` makes
the store say what the runtime holds. A server killed in the middle of a pause or resume can
leave the two apart: the runtime has checkpointed a sandbox the store still calls running (it
is paused now), or restored one the store still calls paused (it is running now, ending its
creation ``timeout`` from now, as after an auto-resume). Copies and snapshots reach the store
only once whole, so a half-made one is nobody's and is removed.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from sandlot.lifecycle import records, snapshots, table
from sandlot.runtime import base, models

__all__ = ["adopt"]

logger = logging.getLogger("sandlot.lifecycle")


async def adopt(
    driver: base.RuntimeDriver,
    rows: records.Records,
    store: snapshots.SnapshotStore,
    sandboxes: table.SandboxTable,
) -> models.ReconcileReport:
    """Load the store's live sandboxes into ``sandboxes``, reconcile the runtime with them,
    mark the ones it lost as killed, and make the store say what the runtime holds."""
    await asyncio.to_thread(store.open)
    live = await asyncio.to_thread(rows.load_live)
    report = await driver.reconcile(known=[r.id for r in live])
    kept = set(report.kept)
    checkpoints: dict[str, Path] = {}
    for sbx in live:
        if sbx.id not in kept:
            continue
        sandboxes.add([sbx])
        info = await driver.info(sandbox_id=sbx.id)
        if info.checkpoint is not None:
            checkpoints[sbx.id] = info.checkpoint
        if info.state in (models.SandboxState.PAUSED, models.SandboxState.RUNNING) and info.state != sbx.state:
            logger.warning("lifecycle.reconcile %s: the store said %s, the runtime holds it %s",
                           sbx.id, sbx.state, info.state)
            if info.state == models.SandboxState.RUNNING:
                sbx.running_again(models.Boot.RESUME, sbx.timeout)
            else:
                sbx.state = models.SandboxState.PAUSED
            await asyncio.to_thread(rows.save_state, sbx)
        if sbx.state == models.SandboxState.PAUSED:
            sbx.paused_at = await asyncio.to_thread(snapshots.made_at, info.checkpoint)
    if report.missing:
        logger.warning("lifecycle.reconcile lost %d sandboxes: %s", len(report.missing), ", ".join(report.missing))
        await asyncio.to_thread(rows.mark_killed, report.missing)
    if report.removed:
        logger.info("lifecycle.reconcile removed %d unowned sandboxes", len(report.removed))
    # Checkpoints of sandboxes that are gone (killed while the server was down, or a crash
    # between a kill and the removal of its checkpoints), and every one a live sandbox is not
    # paused in (half-written, spent by a resume, left by a fork) are nobody's.
    await store.sweep(sandboxes.sandboxes, checkpoints)
    return report
