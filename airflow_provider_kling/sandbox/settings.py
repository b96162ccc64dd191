"""The sandbox's settings: one pydantic model, so every CLI flag is also a ``KLING_SANDBOX_*`` variable.

:class:`Scenario` holds what a test may change while the sandbox runs (``POST /sandbox/config``);
:class:`SandboxSettings` adds what is fixed for the life of the process (address, key, state file).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "KLING_SANDBOX_"

ChaosScope = Literal["poll", "submit", "all"]


class Scenario(BaseModel):
    """How the sandbox behaves: generation time, failures and chaos. Changeable at runtime.

    Example::

        Scenario(generation_seconds=2, rate_429=0.2, seed=7)
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    generation_seconds: float = Field(
        default=8.0, ge=0, description="Seconds from submit to a terminal status (queue phase included)."
    )
    queue_fraction: float = Field(
        default=0.1, ge=0, le=1, description="Share of the generation time spent in TASK_STATUS_QUEUED."
    )
    fail_rate: float = Field(default=0.0, ge=0, le=1, description="Probability that a new task ends FAILED.")
    url_ttl: int = Field(default=3600, ge=0, description="Seconds a signed video URL stays valid.")
    rate_429: float = Field(default=0.0, ge=0, le=1, description="Chaos: share answered 429 with Retry-After: 1.")
    rate_429_no_retry_after: float = Field(
        default=0.0, ge=0, le=1, description="Chaos: share answered 429 without a Retry-After header."
    )
    rate_500: float = Field(default=0.0, ge=0, le=1, description="Chaos: share answered 500 (JSON error body).")
    rate_502_html: float = Field(
        default=0.0, ge=0, le=1, description="Chaos: share answered 502 with an nginx-style HTML page."
    )
    rate_slow: float = Field(default=0.0, ge=0, le=1, description="Chaos: share answered only after --slow-seconds.")
    slow_seconds: float = Field(default=5.0, ge=0, description="Delay of a slow chaos answer, seconds.")
    chaos_scope: ChaosScope = Field(
        default="poll", description="Which calls chaos applies to: poll (task-result), submit or all."
    )
    submit_error_creates_task: bool = Field(
        default=False,
        description="A submit answered 500/502 by chaos still creates the task (ambiguous submit).",
    )
    max_in_flight: int = Field(
        default=0,
        ge=0,
        description="Answer 429 to a submit while this many tasks are generating (0: no limit).",
    )
    seed: int | None = Field(default=None, description="Seed for chaos, fail-rate draws and video seeds.")

    @model_validator(mode="after")
    def _error_rates_fit(self) -> Scenario:
        # The error kinds share one draw per request, so together they cannot exceed certainty.
        total = self.rate_429 + self.rate_429_no_retry_after + self.rate_500 + self.rate_502_html
        if total > 1.0 + 1e-9:
            raise ValueError(
                f"rate_429 + rate_429_no_retry_after + rate_500 + rate_502_html is {total:g}: must be at most 1"
            )
        return self


#: Scenario fields a running sandbox accepts at ``POST /sandbox/config``.
RUNTIME_FIELDS = frozenset(Scenario.model_fields)


class SandboxSettings(BaseSettings, Scenario):
    """Everything the sandbox process is started with. Read from flags, then ``KLING_SANDBOX_*``.

    Example::

        SandboxSettings(port=8089, api_key="sandbox-key", generation_seconds=2)
    """

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", validate_assignment=True)

    host: str = Field(default="127.0.0.1", description="Interface to listen on.")
    port: int = Field(default=8089, ge=0, le=65535, description="TCP port to listen on.")
    api_key: SecretStr | None = Field(
        default=None, description="The only API key accepted (403 otherwise); unset: any non-empty key."
    )
    public_url: str | None = Field(
        default=None, description="Base URL put in video links; unset: the URL the client called."
    )
    state_file: Path | None = Field(
        default=None, description="SQLite file keeping tasks and journal across restarts; unset: memory only."
    )
    signing_secret: SecretStr | None = Field(
        default=None, description="HMAC secret for video URLs; unset: random (kept in the state file if any)."
    )
    journal_limit: int = Field(default=100_000, ge=1, description="Journal entries kept in memory mode.")
    log_level: Literal["critical", "error", "warning", "info", "debug"] = Field(
        default="info", description="Log level of the server."
    )

    def scenario(self) -> Scenario:
        """The runtime-changeable part of these settings."""
        return Scenario.model_validate(self.model_dump(include=set(RUNTIME_FIELDS)))
