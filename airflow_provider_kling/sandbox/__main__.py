"""Command line: ``kling-sandbox`` / ``python -m airflow_provider_kling.sandbox``.

Flags are generated from :class:`~.settings.SandboxSettings`, so each one has a ``KLING_SANDBOX_*``
twin (``--rate-429`` is ``KLING_SANDBOX_RATE_429``) and a flag given wins over its variable.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Literal, get_args, get_origin

from pydantic import ValidationError

from airflow_provider_kling import __version__
from airflow_provider_kling.sandbox.settings import ENV_PREFIX, RUNTIME_FIELDS, SandboxSettings


def build_parser() -> argparse.ArgumentParser:
    """The argument parser: one flag per setting, defaulting to the environment, then the built-in value."""
    parser = argparse.ArgumentParser(
        prog="kling-sandbox",
        description="A local Novita-compatible Kling v3.0 API server for tests and offline DAG runs.",
        epilog=f"Every flag is also an environment variable: --rate-429 is {ENV_PREFIX}RATE_429.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    server = parser.add_argument_group("server (fixed while running)")
    scenario = parser.add_argument_group("scenario (also changeable at runtime: POST /sandbox/config)")
    names = sorted(SandboxSettings.model_fields, key=lambda name: name in RUNTIME_FIELDS)
    for name in names:
        field = SandboxSettings.model_fields[name]
        group = scenario if name in RUNTIME_FIELDS else server
        flag = "--" + name.replace("_", "-")
        default = "unset" if field.default is None else field.default
        help_text = f"{field.description} (env {ENV_PREFIX}{name.upper()}; default {default})"
        # SUPPRESS keeps unset flags out of the namespace, so the environment is not overridden.
        if field.annotation is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help_text)
        elif get_origin(field.annotation) is Literal:
            group.add_argument(flag, choices=get_args(field.annotation), default=argparse.SUPPRESS, help=help_text)
        else:
            group.add_argument(flag, metavar=name.upper(), default=argparse.SUPPRESS, help=help_text)
    return parser


def parse_settings(argv: Sequence[str] | None = None) -> SandboxSettings:
    """Settings from ``argv`` and the environment; exits with a usage error for a bad value."""
    parser = build_parser()
    args = vars(parser.parse_args(argv))
    try:
        return SandboxSettings(**args)
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
