"""``python -m service.demo_model``: serve the demo model until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import signal

from service.demo_model.behaviour import FAULTS, Behaviour
from service.demo_model.server import DemoModelServer


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m service.demo_model", description="Serve the demo model (OpenAI chat completions)."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--tokens", type=int, default=None, help="fixed answer length (default: from prompt)")
    parser.add_argument("--token-delay-ms", type=float, default=30.0)
    parser.add_argument("--first-token-ms", type=float, default=200.0)
    parser.add_argument("--fault", choices=FAULTS, default=None)
    parser.add_argument("--fault-after", type=int, default=0)
    parser.add_argument("--directives", action="store_true", help="obey [[demo key=value ...]] in prompts")
    return parser.parse_args(argv)


async def _serve_until_signalled(server: DemoModelServer) -> None:
    await server.start()
    print(f"demo model listening on {server.base_url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> None:
    args = _parse_args(argv)
    behaviour = Behaviour(
        tokens=args.tokens,
        token_delay=args.token_delay_ms / 1000,
        first_token_delay=args.first_token_ms / 1000,
        fault=args.fault,
        fault_after=args.fault_after,
    )
    asyncio.run(_serve_until_signalled(DemoModelServer(args.host, args.port, behaviour, args.directives)))


if __name__ == "__main__":
    main()
