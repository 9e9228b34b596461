"""Which upstream connections go through an egress proxy: the environment, read as httpx reads it.

The OpenAI SDK honours `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY` (either case) through
httpx, but httpx reads them only for a client without a transport of its own, and every run's client
has one (the shared pool, `service/upstream/http11.py`). So the pool reads them, once, with httpx's own helpers:
`get_environment_proxies` for the variables (urllib's `getproxies`, so lowercase wins over uppercase)
and `URLPattern` for matching them, most specific first, exactly as `httpx.Client` mounts them. Both
are private to httpx 0.28, which exposes no public way to ask; httpx is pinned below 0.29.

Only `http://` proxies are supported: an https or SOCKS proxy is refused at start-up rather than
bypassed, since an operator who set one expects no direct connection. The decision is per origin and
cached, so it costs one dict lookup per request and nothing per read.
"""

import base64

import httpx
from httpx._utils import URLPattern, get_environment_proxies


class Proxy:
    """An `http://` proxy: where to connect, and the header it needs (Basic auth from its URL)."""

    def __init__(self, url: str) -> None:
        parsed = httpx.Proxy(url)  # httpx's parsing: credentials out of the URL, into `auth`
        if parsed.url.scheme != "http":
            raise ValueError(f"proxy {parsed.url.scheme}://{parsed.url.host}: only http:// proxies are supported")
        self.host = parsed.url.host
        self.port = parsed.url.port or 80
        self.headers: dict[str, str] = {}
        if parsed.raw_auth is not None:
            token = base64.b64encode(b":".join(parsed.raw_auth)).decode("ascii")
            self.headers["Proxy-Authorization"] = f"Basic {token}"

    def __repr__(self) -> str:  # never the credentials
        return f"Proxy(http://{self.host}:{self.port})"


class ProxyRoutes:
    def __init__(self, proxies: dict[str, str | None]) -> None:
        """`proxies`: httpx's mount keys (`"https://"`, `"all://*.example.com"`, ...) -> proxy URL, or None for none."""
        mounts = [(URLPattern(key), None if url is None else Proxy(url)) for key, url in proxies.items()]
        self._mounts = sorted(mounts, key=lambda mount: mount[0])
        self._chosen: dict[tuple[str, str, int | None], Proxy | None] = {}

    @classmethod
    def from_environment(cls) -> "ProxyRoutes":
        return cls(get_environment_proxies())

    def for_url(self, url: httpx.URL) -> Proxy | None:
        """The proxy for `url`'s origin, or None to connect directly."""
        origin = (url.scheme, url.host, url.port)
        if origin not in self._chosen:  # two threads may both decide, the same way
            self._chosen[origin] = next((proxy for pattern, proxy in self._mounts if pattern.matches(url)), None)
        return self._chosen[origin]
