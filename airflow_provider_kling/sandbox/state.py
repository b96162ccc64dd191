"""The sandbox's moving parts in one object: settings, scenario, store, clock and random streams."""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.responses import Response

from airflow_provider_kling.sandbox.media import UrlSigner
from airflow_provider_kling.sandbox.responses import error_response
from airflow_provider_kling.sandbox.scenarios import Chaos, PollFaults, TaskPlanner
from airflow_provider_kling.sandbox.settings import RUNTIME_FIELDS, SandboxSettings, Scenario
from airflow_provider_kling.sandbox.store import MemoryStore, open_store

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[Any]]


class ConfigError(ValueError):
    """A ``POST /sandbox/config`` body that names a field which cannot change at runtime."""


class Sandbox:
    """Shared state of one sandbox app (``app.state.sandbox``).

    ``clock`` (epoch seconds) and ``sleep`` are injectable so tests move time instead of waiting.
    """

    def __init__(
        self,
        settings: SandboxSettings,
        *,
        clock: Clock,
        sleep: Sleep,
        store: MemoryStore | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.sleep = sleep
        self.store = store or open_store(settings.state_file, journal_limit=settings.journal_limit)
        self.scenario = settings.scenario()
        self.signer = UrlSigner(self._signing_secret())
        self.chaos = Chaos(self.scenario.seed)
        self.planner = TaskPlanner(self.scenario.seed)
        self.poll_faults = PollFaults()
        key = settings.api_key.get_secret_value() if settings.api_key else ""
        self._api_key = key.encode() if key else None

    def rotate_api_key(self, key: str) -> None:
        """Accept only ``key`` from now on (the old one is refused with 403), as a vendor console does."""
        self._api_key = key.encode()

    def _signing_secret(self) -> bytes:
        if self.settings.signing_secret:
            return self.settings.signing_secret.get_secret_value().encode()
        # Kept in the store so links handed out before a restart (with a state file) still work.
        stored = self.store.get_meta("signing_secret")
        if stored is None:
            stored = secrets.token_hex(32)
            self.store.set_meta("signing_secret", stored)
        return stored.encode()

    def auth_error(self, authorization: str | None) -> Response | None:
        """The vendor's answer to a missing or wrong ``Authorization: Bearer`` key; ``None`` if fine."""
        scheme, _, key = (authorization or "").partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            return error_response(400, "MISSING_API_KEY", "missing API key: send 'Authorization: Bearer <key>'")
        if self._api_key is not None and not hmac.compare_digest(key.encode(), self._api_key):
            return error_response(403, "INVALID_API_KEY", "the API key is not valid")
        return None

    def configure(self, changes: Mapping[str, Any]) -> Scenario:
        """Apply a partial scenario; raises :class:`ConfigError` or pydantic's ``ValidationError``."""
        fixed = sorted(set(changes) - RUNTIME_FIELDS)
        if fixed:
            known = set(SandboxSettings.model_fields)
            what = "cannot be changed at runtime" if set(fixed) <= known else "is not a sandbox setting"
            raise ConfigError(f"{', '.join(fixed)}: {what}; runtime settings are {', '.join(sorted(RUNTIME_FIELDS))}")
        self.scenario = Scenario.model_validate({**self.scenario.model_dump(), **changes})
        if "seed" in changes:
            self.chaos = Chaos(self.scenario.seed)
            self.planner = TaskPlanner(self.scenario.seed)
        return self.scenario

    def reset_config(self) -> Scenario:
        """Go back to the scenario the process was started with."""
        self.scenario = self.settings.scenario()
        self.chaos = Chaos(self.scenario.seed)
        self.planner = TaskPlanner(self.scenario.seed)
        return self.scenario

    def in_flight(self, now: float) -> int:
        """How many tasks are still queued or generating at ``now``."""
        return sum(1 for task in self.store.iter_tasks() if task.completes_at > now)
