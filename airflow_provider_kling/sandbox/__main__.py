"""Command line: ``kling-sandbox`` / ``python -m airflow_provider_kling.sandbox``.

Flags come from :class:`~.settings.SandboxSettings` through pydantic-settings' CLI source, so each one
has a ``KLING_SANDBOX_*`` twin (``--rate-429`` is ``KLING_SANDBOX_RATE_429``) and a flag given wins over
its variable. The server is the ``[sandbox]`` extra: without it the command says what to install.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import sys
from collections.abc import Sequence

from airflow_provider_kling import __version__

#: What the sandbox needs beyond a plain install of the provider (the ``[sandbox]`` extra).
EXTRA_MODULES = ("fastapi", "starlette", "uvicorn", "pydantic_settings")
INSTALL_HINT = "pip install 'airflow-provider-kling[sandbox]'"


def missing_extra_modules() -> list[str]:
    """The modules of the ``[sandbox]`` extra that cannot be imported here."""
    missing = []
    for name in EXTRA_MODULES:
        try:
            found = importlib.util.find_spec(name) is not None
        except ImportError:
            found = False
        if not found:
            missing.append(name)
    return missing


def require_sandbox_extra() -> None:
    """Exit with one line naming the extra to install when any of its modules is missing."""
    missing = missing_extra_modules()
    if missing:
        raise SystemExit(
            f"kling-sandbox needs the [sandbox] extra ({', '.join(missing)} not installed): {INSTALL_HINT}"
        )


# Checked before the settings import, which is the first to need the extra.
require_sandbox_extra()

from pydantic import ValidationError  # noqa: E402
from pydantic_settings import CliSettingsSource  # noqa: E402

from airflow_provider_kling.sandbox.settings import ENV_PREFIX, RUNTIME_FIELDS, SandboxSettings  # noqa: E402


def _cli_source(argv: Sequence[str] | None = None) -> tuple[argparse.ArgumentParser, CliSettingsSource]:
    parser = argparse.ArgumentParser(
        prog="kling-sandbox",
        description="A local Novita-compatible Kling v3.0 API server for tests and offline DAG runs.",
        epilog=(
            f"Every flag is also an environment variable: --rate-429 is {ENV_PREFIX}RATE_429. "
            "Changeable at runtime (POST /sandbox/config): "
            + ", ".join("--" + name.replace("_", "-") for name in sorted(RUNTIME_FIELDS))
            + "; the others are fixed while the server runs."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    source: CliSettingsSource = CliSettingsSource(
        SandboxSettings,
        root_parser=parser,
        cli_kebab_case=True,
        cli_implicit_flags=True,
        cli_show_env_vars=True,
        cli_hide_none_type=True,
        cli_avoid_json=True,
        cli_parse_none_str="unset",
    )
    return parser, source


def build_parser() -> argparse.ArgumentParser:
    """The argument parser: one flag per setting, defaulting to the environment, then the built-in value."""
    return _cli_source()[0]


def parse_settings(argv: Sequence[str] | None = None) -> SandboxSettings:
    """Settings from ``argv`` (default: ``sys.argv``) and the environment; a bad value is a usage error."""
    parser, source = _cli_source()
    try:
        args = list(sys.argv[1:] if argv is None else argv)
        # A pydantic-settings keyword that mypy's pydantic plugin does not know.
        return SandboxSettings(_cli_settings_source=source(args=args))  # type: ignore[call-arg]
    except ValidationError as err:
        problems = "; ".join(
            f"--{'.'.join(map(str, item['loc'])).replace('_', '-')}: {item['msg']}"
            for item in err.errors(include_url=False)
        )
        parser.error(problems)


def serve(settings: SandboxSettings) -> None:
    """Run the sandbox with uvicorn (one worker, no access log) until SIGINT or SIGTERM."""
    import uvicorn

    from airflow_provider_kling.sandbox.app import create_app

    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    state = settings.state_file or "memory only"
    logging.getLogger("kling.sandbox").info(
        "Kling sandbox %s on http://%s:%s (state: %s)", __version__, settings.host, settings.port, state
    )
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=3,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``kling-sandbox``."""
    serve(parse_settings(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
