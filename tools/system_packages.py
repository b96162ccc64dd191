"""Make sure the servers the Airflow 3.3 leg starts are installed: PostgreSQL, Redis, Chromium and its driver.

``make test-3.3`` runs this first. Each program missing from the machine maps to its Debian/Ubuntu package;
as root they are installed with ``apt-get``, otherwise this stops with one line naming what to install.
It never skips anything: the distributed stack and the browser test need these servers, in CI as anywhere.

Standard library only: it runs before (and without) the project's virtual environment.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys

#: Debian package -> how to tell it is installed (a program on PATH, or a glob for server binaries).
PACKAGES: dict[str, str] = {
    # PostgreSQL's server programs live outside PATH on Debian (one folder per major version).
    "postgresql": "/usr/lib/postgresql/*/bin/initdb",
    "redis-server": "redis-server",
    "chromium": "chromium",
    "chromium-driver": "chromedriver",
}


def installed(probe: str) -> bool:
    """Whether ``probe`` (a program name, or an absolute glob) is present."""
    if probe.startswith("/"):
        return bool(glob.glob(probe)) or (probe.endswith("initdb") and shutil.which("initdb") is not None)
    return shutil.which(probe) is not None


def missing() -> list[str]:
    """The Debian packages whose programs are not found."""
    return [package for package, probe in PACKAGES.items() if not installed(probe)]


def main() -> int:
    """Install what is missing as root (apt-get); otherwise name it in one line and fail."""
    needed = missing()
    if not needed:
        return 0
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        print(f"missing system packages, install them first: sudo apt-get install {' '.join(needed)}", file=sys.stderr)
        return 1
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    print(f"installing system packages: {' '.join(needed)}", flush=True)
    subprocess.run(["apt-get", "update", "-qq"], env=env, check=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *needed], env=env, check=True)
    still = missing()
    if still:
        print(f"installed, but still not found: {' '.join(still)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
