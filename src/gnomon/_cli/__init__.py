"""The ``gnomon`` command: run a schedule file as a daemon, check it, and read its history.

Exit statuses: 0 clean, 1 invalid schedule (or unusable store), 2 usage error,
3 stopped with runs that had to be terminated.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gnomon._cli._config import InvalidSchedule
from gnomon._cli._secrets import mask_secrets
from gnomon._errors import GnomonError

__all__ = ["EXIT_INVALID", "EXIT_OK", "EXIT_TERMINATED", "EXIT_USAGE", "main"]

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2
EXIT_TERMINATED = 3
DEFAULT_FILE = Path("gnomon.toml")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``gnomon`` command with ``argv`` (default: ``sys.argv[1:]``); returns its status."""
    parser = _parser()
    try:
        arguments = parser.parse_args(argv)
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else EXIT_USAGE
    try:
        return int(arguments.handler(arguments))
    except UsageError as error:
        parser.print_usage(sys.stderr)
        _complain(f"gnomon {arguments.command}: error: {error}")
        return EXIT_USAGE
    except InvalidSchedule as error:
        _complain(str(error))
        return EXIT_INVALID
    except (GnomonError, OSError) as error:
        _complain(f"gnomon {arguments.command}: error: {error}")
        return EXIT_INVALID


class UsageError(Exception):
    """The command line asks for something that cannot be done as asked."""


def _complain(message: str) -> None:
    sys.stderr.write(mask_secrets(message) + "\n")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gnomon",
        description="Run jobs on a schedule from a TOML file, with history and clean stops.",
    )
    parser.add_argument("--version", action="version", version=f"gnomon {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_run(commands)
    _add_check(commands)
    _add_next(commands)
    _add_history(commands)
    _add_status(commands)
    _add_web(commands)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("gnomon")
    except PackageNotFoundError:
        return "unknown"


def _schedule_file(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "file",
        nargs="?",
        type=Path,
        default=DEFAULT_FILE,
        metavar="FILE",
        help="the schedule file (default: gnomon.toml in the current directory)",
    )


def _state_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state",
        type=Path,
        metavar="PATH",
        help="a SQLite store file (default: the schedule file's store, else beside it)",
    )


def _add_run(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("run", help="run the schedule in the foreground")
    _schedule_file(parser)
    _state_option(parser)
    parser.add_argument("--log-format", choices=("text", "json"), default="text")
    parser.add_argument(
        "--log-level", choices=("debug", "info", "warning", "error"), default="info"
    )
    parser.add_argument(
        "--metrics",
        metavar="[HOST:]PORT",
        help="serve Prometheus metrics and /healthz (host defaults to 127.0.0.1)",
    )
    parser.add_argument(
        "--web",
        metavar="[HOST:]PORT",
        help="serve the dashboard (host defaults to 127.0.0.1; read-only without a token file)",
    )
    parser.add_argument(
        "--web-token-file",
        type=Path,
        metavar="PATH",
        help="a file holding the token that the dashboard's pages and actions require",
    )
    parser.set_defaults(handler=_handle_run)


def _add_check(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("check", help="validate a schedule file and preview it")
    _schedule_file(parser)
    parser.set_defaults(handler=_handle_check)


def _add_next(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("next", help="preview a cron expression's next fire times")
    parser.add_argument("expression", metavar="EXPR", help="a cron expression, quoted")
    parser.add_argument("-n", type=_positive_int, default=5, metavar="N", help="how many (5)")
    parser.add_argument(
        "--timezone", type=_zone, metavar="ZONE", help="IANA zone (default: the local zone)"
    )
    parser.add_argument(
        "--seconds", action="store_true", help="the expression has a leading seconds field"
    )
    parser.set_defaults(handler=_handle_next)


def _add_history(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("history", help="show recorded occurrences, newest first")
    _schedule_file(parser)
    _state_option(parser)
    parser.add_argument("--job", metavar="NAME", help="only this job")
    parser.add_argument("--limit", type=_positive_int, default=20, metavar="N", help="(20)")
    parser.add_argument(
        "--failed", action="store_true", help="only failed, timed-out, cancelled, abandoned"
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(handler=_handle_history)


def _add_status(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("status", help="show each job's last and next run")
    _schedule_file(parser)
    _state_option(parser)
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(handler=_handle_status)


def _add_web(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("web", help="serve the dashboard of a store, read-only")
    _schedule_file(parser)
    parser.add_argument(
        "--store",
        metavar="URL",
        help="sqlite:PATH or a postgresql:// URL (default: the schedule file's store)",
    )
    parser.add_argument(
        "--listen",
        default="127.0.0.1:8421",
        metavar="[HOST:]PORT",
        help="where to serve it (127.0.0.1:8421)",
    )
    parser.set_defaults(handler=_handle_web)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number of at least 1, got {value}")
    return value


def _zone(text: str) -> ZoneInfo:
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a known IANA zone name (such as 'Europe/Paris' or 'UTC')"
        ) from None


def _handle_run(arguments: argparse.Namespace) -> int:
    from gnomon._cli._daemon import run_daemon

    return run_daemon(
        arguments.file,
        state=arguments.state,
        log_format=arguments.log_format,
        log_level=arguments.log_level,
        metrics=arguments.metrics,
        web=arguments.web,
        web_token_file=arguments.web_token_file,
    )


def _handle_check(arguments: argparse.Namespace) -> int:
    from gnomon._cli._commands import check

    return check(arguments.file, sys.stdout)


def _handle_next(arguments: argparse.Namespace) -> int:
    from gnomon._cli._commands import next_times
    from gnomon._cli._config import local_timezone

    zone = arguments.timezone or local_timezone()
    return next_times(
        arguments.expression, arguments.n, zone, seconds=arguments.seconds, out=sys.stdout
    )


def _handle_history(arguments: argparse.Namespace) -> int:
    from gnomon._cli._commands import history, read_settings
    from gnomon._cli._logging import quiet_drivers

    quiet_drivers()
    location, zone = read_settings(arguments.file, arguments.state)
    return history(
        location,
        zone=zone,
        job=arguments.job,
        limit=arguments.limit,
        failed=arguments.failed,
        as_json=arguments.json,
        out=sys.stdout,
    )


def _handle_status(arguments: argparse.Namespace) -> int:
    from gnomon._cli._commands import read_settings, status
    from gnomon._cli._logging import quiet_drivers

    quiet_drivers()
    location, zone = read_settings(arguments.file, arguments.state)
    return status(location, zone=zone, as_json=arguments.json, out=sys.stdout)


def _handle_web(arguments: argparse.Namespace) -> int:
    from gnomon._cli._logging import configure_logging, quiet_drivers
    from gnomon._cli._web import serve_store, web_missing

    problem = web_missing()
    if problem:
        raise UsageError(problem)
    configure_logging("text", "info")
    quiet_drivers()
    location, zone = _web_store(arguments)
    try:
        return serve_store(location, zone, arguments.listen)
    except ValueError as error:
        raise UsageError(str(error)) from None


def _web_store(arguments: argparse.Namespace) -> tuple[object, ZoneInfo]:
    from gnomon._cli._commands import read_settings
    from gnomon._cli._config import local_timezone
    from gnomon._cli._store import read_store

    if arguments.store is None:
        return read_settings(arguments.file, None)
    zone = local_timezone()
    if arguments.file.exists():
        zone = read_settings(arguments.file, None)[1]
    try:
        return read_store(arguments.store, Path.cwd()), zone
    except GnomonError as error:
        raise UsageError(str(error)) from None
