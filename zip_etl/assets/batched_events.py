"""Per-partition asset events written as ONE batch, the way Dagster writes an Output's.

`context.log_event` (and yielding AssetMaterialization / AssetObservation) stores events one
INSERT at a time: for a 2,000-partition run that is the "Dagster defaults" row of
docs/BENCHMARKS.md (48.6 s against 6.0 s). Dagster batches the per-partition events it derives from
an Output (DAGSTER_EVENT_BATCH_SIZE, set in zip_etl/instance.py), but an Output gives every
partition of the run the same tags, and the refresh cycle needs each partition's own data
provenance. So we build the events with Dagster's own constructors and batch metadata, exactly as
`execute_step` does for an Output, and the asset yields them (Dagster passes DagsterEvents yielded
by a compute function through to the run's event stream).
"""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg
from dagster._core.events import DagsterEvent, DagsterEventBatchMetadata, generate_event_batch_id


def batched_events(
    context: dg.OpExecutionContext | dg.AssetExecutionContext,
    events: Sequence[dg.AssetMaterialization | dg.AssetObservation],
) -> list[DagsterEvent]:
    """`events` as DagsterEvents of one batch (stored with one INSERT per DAGSTER_EVENT_BATCH_SIZE
    events); yield them from the compute function."""
    op_context = context.op_execution_context if isinstance(context, dg.AssetExecutionContext) else context
    step_context = op_context.get_step_execution_context()
    batch_id = generate_event_batch_id()
    last = len(events) - 1
    out = []
    for i, event in enumerate(events):
        batch = DagsterEventBatchMetadata(batch_id, i == last)
        if isinstance(event, dg.AssetMaterialization):
            out.append(DagsterEvent.asset_materialization(step_context, event, batch))
        else:
            out.append(DagsterEvent.asset_observation(step_context, event, batch))
    return out
