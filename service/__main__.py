"""`python -m service` (or `haystream`): parse the command line and start uvicorn.

Command-line options are written into the `HAYSTREAM_*` environment before uvicorn starts, so a
multi-worker server builds the same `Settings` in every worker process (`app_from_env`), and the
values are validated once here, before anything listens.

Several workers need a shared store: with `memory://` each worker would hold its own runs,
Idempotency-Keys and conversations, and a retry that reached another worker would start a second
paid generation or a new conversation, silently. So `--workers N > 1` with `memory://` is refused
here, naming the setting to change. Several workers also get prometheus-client's multiprocess mode
without being asked: a private metrics directory, made here and removed on exit, unless the operator
named one (`PROMETHEUS_MULTIPROC_DIR`).
"""

import argparse
import gc
import logging
import os
import signal
from types import FrameType

import uvicorn
from pydantic import ValidationError

from service.ops.logs import configure_logging
from service.ops.metrics import clear_multiprocess_dir, private_multiprocess_dir
from service.settings import Settings

logger = logging.getLogger("service")

# uvicorn's own wait for connections once the drain has handed over; only idle ones should be left.
SERVER_SHUTDOWN_TIMEOUT = 1
MEMORY_STORE = "memory://"
NEEDS_SHARED_STORE = (
    "--workers {workers} needs a shared store, and HAYSTREAM_STORE_URL is memory:// (the default): each worker "
    "would keep its own runs, Idempotency-Keys and conversations, so a retried request reaching another worker "
    "could start a second generation or lose its conversation. Set HAYSTREAM_STORE_URL=redis://HOST:6379/0, "
    "or run one worker."
)


DESCRIPTION = """\
Serve haystream: POST /chat streams an LLM's answer as Server-Sent Events, using the caller's own
API key with OpenAI or any OpenAI-compatible server. --demo answers offline from a built-in model."""

EPILOG = """\
Every setting is also read from a HAYSTREAM_* environment variable (the options here win over
them; --host and --port default to $HOST and $PORT). All settings, with defaults and bounds:
docs/configuration.md."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="haystream",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--host", default=os.environ.get("HOST", "127.0.0.1"), help="address to listen on ($HOST, else 127.0.0.1)"
    )
    parser.add_argument(
        "--port", type=int, default=int(os.environ.get("PORT", "8000")), help="port to listen on ($PORT, else 8000)"
    )
    parser.add_argument(
        "--workers",
        type=workers,
        default=1,
        help="uvicorn worker processes, or `auto`: one per CPU this process may use",
    )
    parser.add_argument(
        "--log-level", choices=["critical", "error", "warning", "info", "debug"], help="info by default"
    )
    parser.add_argument("--log-format", choices=["text", "json"], help="text (default) or JSON lines")
    parser.add_argument("--demo", action="store_true", help="answer from the built-in demo model (offline)")
    parser.add_argument("--base-url", help="OpenAI-compatible upstream, e.g. http://localhost:11434/v1")
    parser.add_argument("--model", help="model name sent upstream")
    return parser


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def workers(value: str) -> int:
    """`--workers`: a count, or `auto` for the CPUs this process may run on (its affinity, which a
    container's cpuset or `taskset` narrows, not the machine's count): one process per core, since a
    process's Python runs on one core at a time (docs/performance.md)."""
    if value == "auto":
        return usable_cpus()
    try:
        count = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is neither a number nor 'auto'") from None
    if count < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return count


def usable_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1  # (macOS has no affinity call)


def main(argv: list[str] | None = None) -> None:
    signal.signal(signal.SIGTERM, _terminated)
    args = parse_args(argv)
    options = {"LOG_LEVEL": args.log_level, "LOG_FORMAT": args.log_format, "BASE_URL": args.base_url}
    for name, value in (options | {"MODEL": args.model}).items():
        if value is not None:
            os.environ[f"HAYSTREAM_{name}"] = value
    if args.demo:
        os.environ["HAYSTREAM_DEMO"] = "true"  # which also means the sample documents (see Settings)
    try:
        settings = Settings()
    except ValidationError as error:
        raise SystemExit(f"invalid configuration:\n{error}") from None
    if args.workers > 1 and settings.store_url == MEMORY_STORE:
        raise SystemExit(NEEDS_SHARED_STORE.format(workers=args.workers))
    configure_logging(settings.log_level, settings.log_format)
    with private_multiprocess_dir(args.workers):
        clear_multiprocess_dir()
        _serve(args, settings)


def _serve(args: argparse.Namespace, settings: Settings) -> None:
    demo = _start_demo_model(settings) if settings.demo else None
    try:
        uvicorn.run(
            "service.app:app_from_env",
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
            log_config=None,
            log_level=settings.log_level,
            server_header=False,
            timeout_graceful_shutdown=SERVER_SHUTDOWN_TIMEOUT,
        )
    finally:
        if demo is not None:
            demo.stop_thread()
        # The interpreter's final collections over Haystack's and the SDK's objects take about 0.4 s
        # of exit time that the shutdown budget (grace + 1 s) cannot spare; nothing needs them.
        gc.freeze()


def _terminated(signum: int, frame: FrameType | None) -> None:
    """SIGTERM is how Docker and Kubernetes stop a container: a normal exit (0), not death by signal (143).

    While uvicorn runs, the app drains on SIGTERM (service/ops/shutdown.py); once uvicorn has shut down
    it re-raises the signal it caught, which lands here, as does a SIGTERM before it starts.
    """
    raise SystemExit(0)


def _start_demo_model(settings: Settings):  # type: ignore[no-untyped-def]
    from service.demo_model import Behaviour, DemoModelServer

    behaviour = Behaviour(token_delay=settings.demo_token_delay, first_token_delay=settings.demo_first_token_delay)
    server = DemoModelServer(behaviour=behaviour)
    server.start_in_thread()
    os.environ["HAYSTREAM_BASE_URL"] = server.base_url
    os.environ.setdefault("HAYSTREAM_MODEL", "demo")
    logger.warning("DEMO MODE: answers come from the built-in demo model at %s, not a real LLM", server.base_url)
    return server


if __name__ == "__main__":
    main()
