"""Fail when the venv holds a package the constraints file does not pin (run by the Makefile).

``pip install -c`` only constrains packages that are listed; a dependency added to ``pyproject.toml``
without regenerating the constraints would otherwise be installed at whatever version is newest that day.

Usage: ``python -m tools.check_pins constraints/airflow-3.3.txt``
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

# Tools of the venv itself, and this project: never pinned.
UNPINNED_OK = frozenset({"pip", "setuptools", "wheel", "airflow-provider-kling"})


def canonical(name: str) -> str:
    """PEP 503 normalised project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned(constraints: Path) -> dict[str, str]:
    """``name -> version`` of every ``name==version`` line."""
    pins = {}
    for line in constraints.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)==([^\s;#]+)", line.strip())
        if match:
            pins[canonical(match[1])] = match[2]
    return pins


def main(argv: list[str]) -> int:
    """Compare installed distributions with the pins; print what differs; 1 if anything does."""
    pins = pinned(Path(argv[0]))
    problems = []
    for dist in metadata.distributions():
        name = canonical(dist.metadata["Name"])
        if name in UNPINNED_OK:
            continue
        if name not in pins:
            problems.append(f"{name}=={dist.version} is installed but not pinned")
        elif pins[name] != dist.version:
            problems.append(f"{name}=={dist.version} is installed but {pins[name]} is pinned")
    for problem in sorted(problems):
        print(problem, file=sys.stderr)
    if problems:
        print(f"Regenerate the pins with `make constraints` and review {argv[0]}.", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
