"""Asset events for stored videos, so a downstream DAG can be scheduled on new videos.

Declare ``outlets`` on the task as usual. For an ``Asset`` outlet the event's extra lists the stored
videos; for an ``AssetAlias`` outlet every stored video becomes its own asset event (its URI as the
asset), which lets a publishing DAG react to each video.

On Airflow 2 the same objects are Datasets (``Dataset``, ``DatasetAlias``: ``common.compat`` hands them out
under the Airflow 3 names) and the events are Dataset events; the log line names what was updated in the
running version's words.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from airflow.providers.common.compat.sdk import Asset, AssetAlias

from airflow_provider_kling._compat import ASSET_TERM
from airflow_provider_kling.delivery import StoredVideo

log = logging.getLogger(__name__)

#: Key of the event extra listing the stored videos (for ``Asset`` outlets).
EXTRA_KEY = "kling_videos"


def emit_video_asset_events(context: Mapping[str, Any], outlets: Iterable[Any], stored: list[StoredVideo]) -> None:
    """Attach the stored videos' facts to this task's outlet events."""
    outlet_events = context.get("outlet_events")
    if outlet_events is None or not stored:
        return
    facts = [video.model_dump(mode="json") for video in stored]
    for outlet in outlets:
        if isinstance(outlet, AssetAlias):
            for video, extra in zip(stored, facts, strict=True):
                outlet_events[outlet].add(Asset(video.uri), extra=extra)
            log.info(
                "%s alias %r: one %s event per stored video (%d)", ASSET_TERM, outlet.name, ASSET_TERM, len(stored)
            )
        elif isinstance(outlet, Asset):
            outlet_events[outlet].extra[EXTRA_KEY] = facts
            log.info(
                "%s %s: its event lists the %d stored video(s) under %r", ASSET_TERM, outlet.uri, len(stored), EXTRA_KEY
            )
