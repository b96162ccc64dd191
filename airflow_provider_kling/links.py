"""The "Kling video" button on a task: opens the generated (or stored) video."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseOperatorLink, XCom

if TYPE_CHECKING:
    from airflow.sdk.types import TaskInstanceKey

#: XCom key holding the URL the link opens: the stored copy when it has an http(s) URL, else the
#: vendor's signed URL (which expires after about an hour).
XCOM_VIDEO_URL = "kling_video_url"


class KlingVideoLink(BaseOperatorLink):
    """Extra link to the video a Kling task produced, read from XCom."""

    name = "Kling video"

    def get_link(self, operator: Any, *, ti_key: TaskInstanceKey) -> str:
        """The video URL pushed by the task, or an empty string before it finished."""
        url = XCom.get_value(ti_key=ti_key, key=XCOM_VIDEO_URL)
        return str(url) if url else ""
