"""The command line, settings from flags and environment, and SandboxProcess with a real subprocess."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys

import httpx
import pytest

from airflow_provider_kling.sandbox import SandboxProcess, SandboxSettings
from airflow_provider_kling.sandbox.__main__ import build_parser, parse_settings
from airflow_provider_kling.sandbox.process import SandboxStartError, free_port
from airflow_provider_kling.sandbox.settings import ENV_PREFIX

FAKE_KEY = "process-fake-key"


@pytest.fixture
def clean_env(monkeypatch):
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)
    return monkeypatch


def pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_every_setting_has_a_flag(clean_env):
    flags = {option for action in build_parser()._actions for option in action.option_strings}
    for name in SandboxSettings.model_fields:
        assert "--" + name.replace("_", "-") in flags


def test_documented_flags_exist():
    flags = {option for action in build_parser()._actions for option in action.option_strings}
    assert {
        "--host",
        "--port",
        "--api-key",
        "--generation-seconds",
        "--fail-rate",
        "--rate-429",
        "--rate-429-no-retry-after",
        "--rate-500",
        "--rate-502-html",
        "--rate-slow",
        "--slow-seconds",
        "--chaos-scope",
        "--seed",
        "--url-ttl",
        "--state-file",
        "--submit-error-creates-task",
    } <= flags


def test_flags_become_settings(clean_env, tmp_path):
    settings = parse_settings(
        [
            "--host",
            "127.0.0.1",
            "--port",
            "8089",
            "--generation-seconds",
            "2.5",
            "--rate-429",
            "0.1",
            "--chaos-scope",
            "all",
            "--seed",
            "7",
            "--state-file",
            str(tmp_path / "s.db"),
            "--submit-error-creates-task",
            "--api-key",
            FAKE_KEY,
        ]
    )
    assert settings.port == 8089
    assert settings.generation_seconds == 2.5
    assert settings.rate_429 == 0.1
    assert settings.chaos_scope == "all"
    assert settings.seed == 7
    assert settings.state_file == tmp_path / "s.db"
    assert settings.submit_error_creates_task is True
    assert settings.api_key is not None
    assert settings.api_key.get_secret_value() == FAKE_KEY
    assert FAKE_KEY not in repr(settings)


def test_environment_variables_become_settings(clean_env):
    clean_env.setenv("KLING_SANDBOX_GENERATION_SECONDS", "3")
    clean_env.setenv("KLING_SANDBOX_RATE_502_HTML", "0.5")
    clean_env.setenv("KLING_SANDBOX_SUBMIT_ERROR_CREATES_TASK", "true")
    settings = parse_settings([])
    assert settings.generation_seconds == 3
    assert settings.rate_502_html == 0.5
    assert settings.submit_error_creates_task is True


def test_a_flag_wins_over_its_environment_variable(clean_env):
    clean_env.setenv("KLING_SANDBOX_GENERATION_SECONDS", "3")
    assert parse_settings(["--generation-seconds", "4"]).generation_seconds == 4


def test_defaults(clean_env):
    settings = parse_settings([])
    assert (settings.host, settings.port, settings.generation_seconds) == ("127.0.0.1", 8089, 8.0)
    assert (settings.url_ttl, settings.chaos_scope, settings.state_file) == (3600, "poll", None)


@pytest.mark.parametrize("argv", [["--fail-rate", "2"], ["--chaos-scope", "media"], ["--port", "http"]])
def test_bad_flag_value_is_a_usage_error(clean_env, argv, capsys):
    with pytest.raises(SystemExit) as exited:
        parse_settings(argv)
    assert exited.value.code == 2


def test_sandbox_imports_nothing_from_airflow():
    code = (
        "import sys, airflow_provider_kling.sandbox.__main__, airflow_provider_kling.sandbox.app, "
        "airflow_provider_kling.sandbox.process; "
        "print([m for m in sys.modules if m == 'airflow' or m.startswith('airflow.')])"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "[]"


def test_console_script_is_installed():
    script = shutil.which("kling-sandbox") or os.path.join(os.path.dirname(sys.executable), "kling-sandbox")
    result = subprocess.run([script, "--version"], capture_output=True, text=True, check=True)
    assert result.stdout.startswith("kling-sandbox ")


def test_module_help_lists_environment_variables():
    result = subprocess.run(
        [sys.executable, "-m", "airflow_provider_kling.sandbox", "--help"], capture_output=True, text=True, check=True
    )
    assert "KLING_SANDBOX_RATE_429" in result.stdout


def test_sandbox_process_starts_answers_and_stops_by_pid(tmp_path):
    sandbox = SandboxProcess(api_key=FAKE_KEY, generation_seconds=0, log_path=tmp_path / "sandbox.log")
    with sandbox:
        pid = sandbox.pid
        assert pid is not None
        assert pid_exists(pid)
        assert sandbox.url == f"http://127.0.0.1:{sandbox.port}"
        assert sandbox.health()["pid"] == pid
        headers = {"Authorization": f"Bearer {FAKE_KEY}"}
        submit = httpx.post(f"{sandbox.url}/v3/async/kling-v3.0-std-t2v", json={"prompt": "a fox"}, headers=headers)
        task_id = submit.json()["task_id"]
        result = httpx.get(f"{sandbox.url}/v3/async/task-result", params={"task_id": task_id}, headers=headers)
        video = httpx.get(result.json()["videos"][0]["video_url"])
        assert video.status_code == 200
        assert video.content[4:8] == b"ftyp"
        assert len(sandbox.journal(kind="submit", task_id=task_id)) == 1
        assert [task["task_id"] for task in sandbox.tasks()] == [task_id]
    assert not sandbox.running
    assert sandbox.pid is None
    assert not pid_exists(pid)
    assert FAKE_KEY not in (tmp_path / "sandbox.log").read_text()


def test_sandbox_process_restart_keeps_port_state_and_runtime_config(tmp_path):
    port = free_port()
    with SandboxProcess(port=port, state_file=tmp_path / "state.db", generation_seconds=60) as sandbox:
        first_pid = sandbox.pid
        sandbox.configure(rate_429=0.5, seed=3)
        task_id = httpx.post(
            f"{sandbox.url}/v3/async/kling-v3.0-std-t2v",
            json={"prompt": "a fox"},
            headers={"Authorization": "Bearer x"},
        ).json()["task_id"]
        sandbox.restart()
        assert sandbox.port == port
        assert sandbox.pid != first_pid
        assert not pid_exists(first_pid)
        assert [task["task_id"] for task in sandbox.tasks()] == [task_id]
        assert sandbox.config()["rate_429"] == 0.5
        sandbox.reset_config()
        assert sandbox.config()["rate_429"] == 0
        sandbox.clear_journal()
        assert sandbox.journal() == []


def test_stop_escalates_to_sigkill_when_sigterm_is_not_enough(tmp_path):
    sandbox = SandboxProcess(grace_period=0.2, log_path=tmp_path / "sandbox.log").start()
    pid = sandbox.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)  # a stopped process cannot act on SIGTERM
    assert sandbox.stop() == -signal.SIGKILL
    assert not pid_exists(pid)


def test_sandbox_process_reports_a_child_that_fails_to_start(tmp_path):
    sandbox = SandboxProcess(env={"KLING_SANDBOX_FAIL_RATE": "lots"}, log_path=tmp_path / "sandbox.log")
    with pytest.raises(SandboxStartError, match="exited with code 2"):
        sandbox.start()
    assert not sandbox.running


def test_sandbox_process_refuses_unknown_settings():
    with pytest.raises(TypeError, match="generation_secs"):
        SandboxProcess(generation_secs=1)


def test_sandbox_process_environment_carries_settings(tmp_path):
    sandbox = SandboxProcess(generation_seconds=2, submit_error_creates_task=True, state_file=tmp_path / "s.db")
    env = sandbox.environment()
    assert env["KLING_SANDBOX_GENERATION_SECONDS"] == "2"
    assert env["KLING_SANDBOX_SUBMIT_ERROR_CREATES_TASK"] == "true"
    assert env["KLING_SANDBOX_STATE_FILE"] == str(tmp_path / "s.db")


def test_airflow_connection_points_at_the_sandbox():
    sandbox = SandboxProcess(port=8089)
    assert json.loads(sandbox.airflow_connection("sandbox-key")) == {
        "conn_type": "kling",
        "host": "http://127.0.0.1:8089",
        "password": "sandbox-key",
    }


def test_temporary_log_is_removed_after_a_clean_exit():
    with SandboxProcess() as sandbox:
        assert sandbox.log_path.exists()
    assert not sandbox.log_path.exists()


def test_stop_without_start_is_harmless():
    assert SandboxProcess().stop() is None
