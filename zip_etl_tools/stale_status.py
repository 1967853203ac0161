"""Dagster's own stale status of a partition, for tests and benchmarks (Dagster internals: never
imported by the runtime package)."""

from __future__ import annotations

from dagster._core.definitions.data_version import StaleStatus

__all__ = ["StaleStatus", "dagster_stale_status_resolver"]


def dagster_stale_status_resolver(instance, definitions):
    """Dagster's own per-partition stale status (what the UI shows on a partition's page):
    `resolver.get_status(asset_key, partition_key)`."""
    from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView, TemporalContext
    from dagster._core.definitions.data_version import CachingStaleStatusResolver
    from dagster._time import get_current_datetime

    asset_graph = definitions.resolve_asset_graph()
    view = AssetGraphView(
        temporal_context=TemporalContext(effective_dt=get_current_datetime(), last_event_id=None),
        instance=instance,
        asset_graph=asset_graph,
    )
    return CachingStaleStatusResolver(instance=instance, asset_graph=asset_graph, loading_context=view)
