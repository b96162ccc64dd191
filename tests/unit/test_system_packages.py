"""tools/system_packages.py: what `make test-3.3` checks before the stacks that need system servers."""

from __future__ import annotations

import pytest

from tools import system_packages


def test_nothing_to_do_when_every_program_is_there(monkeypatch):
    monkeypatch.setattr(system_packages, "installed", lambda probe: True)
    assert system_packages.main() == 0


def test_not_root_stops_with_one_line_naming_the_packages(monkeypatch, capsys):
    monkeypatch.setattr(system_packages, "installed", lambda probe: probe not in ("redis-server", "chromedriver"))
    monkeypatch.setattr(system_packages.os, "geteuid", lambda: 1000)
    assert system_packages.main() == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.strip().endswith("sudo apt-get install redis-server chromium-driver")


def test_root_installs_the_missing_packages_with_apt_get(monkeypatch):
    present = {"redis-server": False}
    calls: list[list[str]] = []

    def run(cmd: list[str], **kwargs: object) -> None:
        calls.append(cmd)
        if cmd[1] == "install":
            present["redis-server"] = True

    monkeypatch.setattr(system_packages, "installed", lambda probe: present.get(probe, True))
    monkeypatch.setattr(system_packages.os, "geteuid", lambda: 0)
    monkeypatch.setattr(system_packages.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(system_packages.subprocess, "run", run)
    assert system_packages.main() == 0
    assert calls[-1][-1] == "redis-server"
    assert calls[-1][:2] == ["apt-get", "install"]


@pytest.mark.parametrize(("probe", "expected"), [("sh", True), ("no-such-program-here", False)])
def test_programs_are_looked_up_on_the_path(probe, expected):
    assert system_packages.installed(probe) is expected
