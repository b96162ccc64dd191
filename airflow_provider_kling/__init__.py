"""Apache Airflow provider for Kling v3.0 AI video generation through the Novita API.

Start with :class:`airflow_provider_kling.operators.kling.KlingTextToVideoOperator`; see ``docs/``.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
