"""Fixtures for end-to-end tests: the Kling sandbox and a real Airflow 3.3 stack talking to it.

The test process imports nothing from Airflow: it drives the stack over REST and reads its log files
(:mod:`tools.airflow_stack`), and looks behind the vendor's curtain through the sandbox's own endpoints.

When a test fails, the stack's ``AIRFLOW_HOME`` (component logs, task and trigger logs, the database)
and the sandbox log are copied to ``.e2e-logs/<test name>/``; otherwise everything is deleted.
"""

from __future__ import annotations

import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
# `tools` is dev tooling at the repository root, not part of the installed package; `python -m pytest`
# from the root finds it anyway, a bare `pytest` from elsewhere would not.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from airflow_provider_kling.sandbox.process import SandboxProcess  # noqa: E402
from tools.airflow_stack import AirflowStack, StackFactory, make_stack  # noqa: E402
from tools.moto_s3 import moto_server  # noqa: E402

E2E_LOGS = REPO_ROOT / ".e2e-logs"
SANDBOX_API_KEY = "sandbox-key"  # fake: the sandbox accepts only this one, which proves it is sent

# (label, boot seconds, peak PSS bytes) of every stack, printed at the end of the session.
_STACK_FIGURES: list[tuple[str, float, int]] = []


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep each phase's report on the test item, so fixtures can tell whether the test failed."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print how long each stack took to boot and its peak memory: the figures the README quotes."""
    if not _STACK_FIGURES:
        return
    terminalreporter.section("airflow stacks")
    for label, boot, peak in _STACK_FIGURES:
        terminalreporter.write_line(f"{label}: booted in {boot:.1f} s, peak PSS {peak / 2**20:.0f} MiB")


def _record(label: str, stack: AirflowStack) -> None:
    _STACK_FIGURES.append((label, stack.boot_seconds or 0.0, stack.peak_memory_bytes))


def _failed(node: pytest.Item) -> bool:
    return any(getattr(getattr(node, f"rep_{when}", None), "failed", False) for when in ("setup", "call"))


def _log_dir(node: pytest.Item) -> Path:
    return E2E_LOGS / re.sub(r"[^A-Za-z0-9_.-]+", "_", node.name)


def _keep(node: pytest.Item, stack: AirflowStack | None, sandbox: SandboxProcess | None, tag: str) -> None:
    dest = _log_dir(node)
    dest.mkdir(parents=True, exist_ok=True)
    if stack is not None:
        stack.archive(dest / f"airflow-home{tag}")
    if sandbox is not None and sandbox.log_path.exists():
        shutil.copy(sandbox.log_path, dest / "sandbox.log")


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    """The Kling sandbox on 127.0.0.1 (free port), shared by the session.

    Generations take 8 s by default: longer than the window of Airflow 3.3.2's defer/resume race
    (about 5 s, see the README), and long enough to observe ``deferred``. Tests needing other timings
    use prompt markers (``[sandbox:seconds=40]``) rather than changing the shared scenario.
    """
    log = tmp_path_factory.mktemp("sandbox") / "sandbox.log"
    with SandboxProcess(api_key=SANDBOX_API_KEY, generation_seconds=8.0, log_path=log) as process:
        yield process


def _connection(sandbox: SandboxProcess) -> str:
    return sandbox.airflow_connection(SANDBOX_API_KEY)


@pytest.fixture(scope="module")
def moto_s3() -> Iterator[str]:
    """moto's S3 server for a module (a thread of the test process, stopped at the module's end); its URL.

    A stack's workers reach it over HTTP like any S3 endpoint: give them
    :func:`tools.moto_s3.aws_connection` and :data:`tools.moto_s3.FAKE_CREDENTIALS`.
    """
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def airflow_stack_options() -> dict[str, Any]:
    """More keyword arguments of :class:`AirflowStack` for a module's shared stack: none by default.

    A test module overrides this fixture to give its shared stack its own DAGs folder, environment or
    extra ``connections`` (added to ``kling_default``).
    """
    return {}


@pytest.fixture(scope="module")
def airflow_stack(
    request: pytest.FixtureRequest, sandbox: SandboxProcess, airflow_stack_options: dict[str, Any]
) -> Iterator[AirflowStack]:
    """A real Airflow stack shared by a module's tests: ``example_dags/``, 2 worker slots, the sandbox.

    Shared to save its start-up (about 10 s); module-scoped so it is not idling on the two cores while
    other modules run stacks of their own. Tests that kill components use :func:`airflow_stack_factory`.
    A module can change it with :func:`airflow_stack_options`.
    """
    options = dict(airflow_stack_options)
    connections = {"kling_default": _connection(sandbox), **options.pop("connections", {})}
    # make_stack: the stack for this interpreter's Airflow (the Airflow 2 one on 2.11, see tests/e2e/test_compat.py).
    with make_stack(**{"parallelism": 2, **options}, connections=connections) as stack:
        yield stack
        stack.stop()  # before reading the peak: the sampler stops with the stack
        _record(f"{request.module.__name__} shared stack", stack)


@pytest.fixture(autouse=True)
def _keep_logs_of_failed_test(request: pytest.FixtureRequest) -> Iterator[None]:
    """Snapshot the shared stack and the sandbox log for a failed test (they live on after it)."""
    yield
    if not _failed(request.node):
        return
    stack = request.getfixturevalue("airflow_stack") if "airflow_stack" in request.fixturenames else None
    box = request.getfixturevalue("sandbox") if "sandbox" in request.fixturenames else None
    if stack is not None or box is not None:
        _keep(request.node, stack, box, "")


@pytest.fixture
def airflow_stack_factory(request: pytest.FixtureRequest) -> Iterator[StackFactory]:
    """Build private stacks (``factory(dags_folder=..., parallelism=..., connections=...)``).

    For tests that change or break a stack (kill the triggerer, use their own DAGs folder). Every stack
    built is booted, then stopped, archived if the test failed, and deleted at teardown.
    """
    stacks: list[AirflowStack] = []

    def factory(**kwargs: Any) -> AirflowStack:
        stack = make_stack(**kwargs)
        stacks.append(stack)
        stack.boot()
        return stack

    yield factory
    for n, stack in enumerate(stacks):
        stack.stop()
        _record(f"{request.node.name} stack {n}", stack)
        if _failed(request.node):
            _keep(request.node, stack, None, f"-{n}" if n else "")
        stack.cleanup()
