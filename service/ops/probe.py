"""`python -m service.ops.probe [PATH]`: exit 0 if the local service answers `PATH` (`/healthz`) with 200.

The container's HEALTHCHECK. The slim image has no curl, and this needs only the standard library
(importing `service` does not import the web stack). It asks where `python -m service` listens:
`PORT`, and `HOST` unless that is a wildcard address. Proxy variables are ignored: the probe is local.
"""

import os
import sys
import urllib.request

WILDCARDS = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}


def probe_url(path: str = "/healthz") -> str:
    host = os.environ.get("HOST", "127.0.0.1")
    host = WILDCARDS.get(host, host)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{os.environ.get('PORT', '8000')}{path}"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    url = probe_url(*args[:1])
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=2) as response:
            return 0 if response.status == 200 else 1
    except OSError as error:  # refused, timed out, or an HTTP error status (HTTPError is an OSError)
        print(f"{url}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
