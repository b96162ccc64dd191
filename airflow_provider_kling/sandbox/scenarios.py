"""What happens to a task and to a request: prompt markers, the task plan, and seeded chaos.

A task's whole life is decided when it is submitted (how long it queues and generates, whether it
succeeds, which seed it reports), so its status is a pure function of the clock afterwards. Per-task
overrides come from markers such as ``[sandbox:seconds=20]`` in ``prompt`` or any
``multi_prompt[].prompt``; everything else comes from the current :class:`~.settings.Scenario`.

Two markers imitate an eventually consistent vendor, answer by answer: ``[sandbox:not_found=2]`` makes
the task's first two polls answer ``404 TASK_NOT_FOUND`` (the id is not visible yet), and
``[sandbox:empty_success=1]`` makes its first poll after it succeeded answer ``TASK_STATUS_SUCCEED``
with no video (see :class:`PollFaults`).
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from airflow_provider_kling.models import KlingRequest, MultiPromptShot
from airflow_provider_kling.sandbox.settings import Scenario
from airflow_provider_kling.sandbox.store import TaskRecord

POLICY_REASON = "ILLEGAL_PROMPT: the prompt was rejected by content moderation"
DEFAULT_FAIL_REASON = "TASK_FAILED: video generation failed"
FAIL_RATE_REASON = "TASK_FAILED: video generation failed (sandbox fail-rate)"

_MARKER = re.compile(r"\[sandbox:\s*([A-Za-z_]+)\s*(?:=([^\]]*))?\]", re.IGNORECASE)
_VALUED = frozenset({"seconds", "queue", "ttl", "seed", "not_found", "empty_success"})
_FLAGS = frozenset({"policy", "empty_extra", "succeed"})
KNOWN_MARKERS = tuple(sorted(_VALUED | _FLAGS | {"fail"}))


class MarkerError(ValueError):
    """A ``[sandbox:...]`` marker that is unknown or has a bad value (answered 400)."""


@dataclass
class Markers:
    """The per-task overrides found in a request's prompts."""

    seconds: float | None = None
    queue: float | None = None
    ttl: int | None = None
    seed: int | None = None
    not_found: int | None = None
    empty_success: int | None = None
    fail: str | None = None
    policy: bool = False
    empty_extra: bool = False
    succeed: bool = False
    raw: dict[str, str] = field(default_factory=dict)


def prompts_of(request: KlingRequest) -> list[str]:
    """Every prompt text of a request: ``prompt`` and each ``multi_prompt`` shot."""
    texts: list[str] = []
    prompt = getattr(request, "prompt", None)
    if isinstance(prompt, str):
        texts.append(prompt)
    for shot in getattr(request, "multi_prompt", None) or ():
        texts.append(shot.prompt if isinstance(shot, MultiPromptShot) else str(shot))
    return texts


def parse_markers(texts: Iterable[str]) -> Markers:
    """Collect the ``[sandbox:name]`` / ``[sandbox:name=value]`` markers in ``texts``.

    Raises :class:`MarkerError` for an unknown name or a bad value, so a typo in a test's marker fails
    loudly instead of silently running the default scenario.
    """
    markers = Markers()
    for text in texts:
        for match in _MARKER.finditer(text):
            name, value = match[1].lower(), (match[2] or "").strip()
            markers.raw[name] = value
            _apply(markers, name, value)
    return markers


def _apply(markers: Markers, name: str, value: str) -> None:
    if name == "fail":
        markers.fail = value or DEFAULT_FAIL_REASON
    elif name in _FLAGS:
        if value:
            raise MarkerError(f"sandbox marker [sandbox:{name}] takes no value")
        setattr(markers, name, True)
    elif name in _VALUED:
        setattr(markers, name, _number(name, value))
    else:
        raise MarkerError(f"unknown sandbox marker [sandbox:{name}]; known: {', '.join(KNOWN_MARKERS)}")


def _number(name: str, value: str) -> float | int:
    try:
        number: float | int = float(value) if name in ("seconds", "queue") else int(value)
    except ValueError:
        raise MarkerError(f"sandbox marker [sandbox:{name}={value}] needs a number") from None
    if number < 0 or not math.isfinite(number):
        raise MarkerError(f"sandbox marker [sandbox:{name}={value}] must be zero or more")
    return number


class TaskPlanner:
    """Decides each new task's timeline and outcome from the scenario and the markers.

    Its own random stream (seeded from ``Scenario.seed``) keeps fail-rate draws and video seeds
    reproducible whatever the chaos on polls does.
    """

    def __init__(self, seed: int | None) -> None:
        self._rng = random.Random(None if seed is None else f"tasks:{seed}")

    def plan(self, *, task_id: str, model: str, request: KlingRequest, scenario: Scenario, now: float) -> TaskRecord:
        """The full life of a task submitted at ``now``; raises :class:`MarkerError` on a bad marker."""
        markers = parse_markers(prompts_of(request))
        total = scenario.generation_seconds if markers.seconds is None else markers.seconds
        queue = total * scenario.queue_fraction if markers.queue is None else min(markers.queue, total)
        # Draw both numbers for every task so one task's markers do not shift the others' draws.
        random_failure = self._rng.random() < scenario.fail_rate
        seed = self._rng.randrange(1, 2**31) if markers.seed is None else markers.seed
        if markers.policy:
            # Moderation refuses before any rendering starts: FAILED straight from the queue.
            succeeds, reason, completes = False, POLICY_REASON, now + queue
        elif markers.fail is not None:
            succeeds, reason, completes = False, markers.fail, now + total
        elif random_failure and not markers.succeed:
            succeeds, reason, completes = False, FAIL_RATE_REASON, now + total
        else:
            succeeds, reason, completes = True, "", now + total
        return TaskRecord(
            task_id=task_id,
            model=model,
            created_at=now,
            started_at=now + queue,
            completes_at=completes,
            succeeds=succeeds,
            reason=reason,
            seed=seed,
            url_ttl=markers.ttl,
            empty_extra=markers.empty_extra,
            markers=markers.raw,
        )


ChaosKind = Literal["429", "429_no_retry_after", "500", "502_html"]


@dataclass(frozen=True)
class ChaosDraw:
    """What chaos does to one request: an error to answer instead, and/or a delay first."""

    error: ChaosKind | None = None
    slow: bool = False


NO_CHAOS = ChaosDraw()


class Chaos:
    """Seeded fault injection for submits and polls (see ``Scenario.chaos_scope``)."""

    def __init__(self, seed: int | None) -> None:
        self._rng = random.Random(None if seed is None else f"chaos:{seed}")

    def draw(self, scenario: Scenario, kind: Literal["submit", "poll"]) -> ChaosDraw:
        """Decide the fate of one request of ``kind``."""
        if scenario.chaos_scope != "all" and scenario.chaos_scope != kind:
            return NO_CHAOS
        rates: tuple[tuple[ChaosKind, float], ...] = (
            ("429", scenario.rate_429),
            ("429_no_retry_after", scenario.rate_429_no_retry_after),
            ("500", scenario.rate_500),
            ("502_html", scenario.rate_502_html),
        )
        if scenario.rate_slow == 0 and not any(rate for _, rate in rates):
            return NO_CHAOS  # the common case: no random draw at all on the hot path
        error_roll, slow_roll = self._rng.random(), self._rng.random()
        error: ChaosKind | None = None
        ceiling = 0.0
        for name, rate in rates:
            ceiling += rate
            if error_roll < ceiling:
                error = name
                break
        return ChaosDraw(error=error, slow=slow_roll < scenario.rate_slow)


class PollFaults:
    """The per-task answer faults of the ``not_found`` and ``empty_success`` markers.

    Counts each task's polls in memory (a restarted sandbox starts counting again), so "the first two
    polls" means two answers, whoever asks.
    """

    def __init__(self) -> None:
        self._polls: dict[str, int] = {}
        self._successes: dict[str, int] = {}

    def not_found(self, task: TaskRecord) -> bool:
        """Whether this poll of ``task`` answers ``404 TASK_NOT_FOUND`` (counts the poll)."""
        seen = self._polls.get(task.task_id, 0)
        self._polls[task.task_id] = seen + 1
        return seen < _marker_count(task, "not_found")

    def empty_success(self, task: TaskRecord) -> bool:
        """Whether this poll of a succeeded ``task`` answers without its video (counts the answer)."""
        seen = self._successes.get(task.task_id, 0)
        self._successes[task.task_id] = seen + 1
        return seen < _marker_count(task, "empty_success")


def _marker_count(task: TaskRecord, name: str) -> int:
    value = task.markers.get(name)
    if value is None:
        return 0
    try:
        return int(value)
    except ValueError:
        return 0
