"""Publish new videos: runs whenever ``example_kling_content_pipeline`` has stored some.

It is scheduled on the ``kling_videos`` asset. Each event of that asset lists stored videos in
``extra["kling_videos"]`` (URI, sidecar URI, connection, size, SHA-256, Kling task id, ...): the
pipeline emits one per run, and so does any Kling operator with ``outlets=[Asset("kling_videos")]``. This
DAG reads every video back from storage (``file://``, ``s3://``, any scheme Airflow supports), checks it
against the recorded SHA-256, reads its sidecar, and "publishes" it: replace the ``print`` with an
upload to your CMS or CDN.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from airflow.sdk import DAG, Asset, ObjectStoragePath, task

KLING_VIDEOS = Asset("kling_videos")

with DAG(dag_id="example_kling_publish_videos", schedule=[KLING_VIDEOS], catchup=False, tags=["example", "kling"]):

    @task
    def publish(triggering_asset_events: Any = None) -> list[dict[str, Any]]:
        """Check and publish each new video (one run may collect the events of several tasks)."""
        published = []
        for event in triggering_asset_events[KLING_VIDEOS]:
            for video in event.extra.get("kling_videos", []):
                path = ObjectStoragePath(video["uri"], conn_id=video.get("conn_id"))
                digest = hashlib.sha256()
                with path.open("rb") as stream:
                    while chunk := stream.read(1024 * 1024):
                        digest.update(chunk)
                if digest.hexdigest() != video["sha256"]:
                    raise ValueError(f"{path}: SHA-256 {digest.hexdigest()} is not the recorded {video['sha256']}")
                sidecar = json.loads(ObjectStoragePath(video["sidecar_uri"], conn_id=video.get("conn_id")).read_text())
                print(f"Publishing {path}: {sidecar['request'].get('prompt')!r}, seed {sidecar['seed']}")
                published.append({**video, "prompt": sidecar["request"].get("prompt"), "verified": True})
        return published

    publish()
