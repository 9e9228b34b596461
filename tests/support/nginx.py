"""A real nginx in front of the service, configured from the reference `deploy/nginx.conf`.

`render` changes only what a test must (loopback ports, one worker, and every pid, log and temp
path under a temp dir), plus the named variations a test asks for; each change must find its
directive in the reference, so a test cannot quietly run a config other than the one shipped.
`run_nginx` runs it in the foreground and stops it by its PID.
"""

import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from tests.support.binaries import require
from tests.support.servers import accepts, unused_port
from tests.support.waiting import wait_until

REFERENCE = Path(__file__).resolve().parents[2] / "deploy" / "nginx.conf"
_TEMP_PATHS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
_HTTP11_AND_NO_BUFFERING = (
    r"proxy_http_version\s+1\.1;",
    r'proxy_set_header\s+Connection\s+"";',
    r"proxy_buffering\s+off;",
)


@dataclass(frozen=True)
class Tweaks:
    """What a test changes in the reference config, beyond ports and paths."""

    read_timeout: str | None = None
    """Replaces proxy_read_timeout (e.g. "1s")."""
    nginx_defaults: bool = False
    """Drops HTTP/1.1, `Connection ""` and `proxy_buffering off`: nginx's own HTTP/1.0 with buffering on."""
    ignore_accel_buffering: bool = False
    """Adds `proxy_ignore_headers X-Accel-Buffering`, so the service's header cannot turn buffering off."""


AS_SHIPPED = Tweaks()


def render(reference: str, *, port: int, upstreams: list[str], workdir: Path, tweaks: Tweaks = AS_SHIPPED) -> str:
    """The reference config, pointed at `upstreams` ("127.0.0.1:PORT", each with the reference server
    line's parameters) and listening on loopback."""
    conf = _sub(reference, r"listen\s+[^;]+", f"listen 127.0.0.1:{port}")
    servers = " ".join(f"server {upstream}\\g<params>;" for upstream in upstreams)
    conf = _sub(conf, r"server\s+127\.0\.0\.1:8000(?P<params>[^;]*);", servers)
    conf = _sub(conf, r"worker_processes\s+[^;]+", "worker_processes 1")
    if tweaks.read_timeout is not None:
        conf = _sub(conf, r"proxy_read_timeout\s+[^;]+", f"proxy_read_timeout {tweaks.read_timeout}")
    if tweaks.nginx_defaults:
        for directive in _HTTP11_AND_NO_BUFFERING:
            conf = _sub(conf, directive, "")
    if tweaks.ignore_accel_buffering:
        conf = _sub(conf, r"proxy_pass\s+[^;]+;", r"\g<directive> proxy_ignore_headers X-Accel-Buffering;")
    paths = " ".join(f"{name}_temp_path {workdir / name};" for name in _TEMP_PATHS)
    conf = _sub(conf, r"http\s*\{", rf"\g<directive> {paths} access_log {workdir / 'access.log'};")
    return f"pid {workdir / 'nginx.pid'};\n{conf}"


def _sub(conf: str, directive: str, replacement: str) -> str:
    """Replace a directive where it starts a line (never inside a comment); it must be there.

    `replacement` may use `\\g<directive>` for the directive as found.
    """
    pattern = re.compile(rf"^(?P<indent>[ \t]*)(?P<directive>{directive})", re.MULTILINE)
    result, count = pattern.subn(lambda m: m["indent"] + m.expand(replacement), conf)
    assert count >= 1, f"deploy/nginx.conf has no `{directive}` directive any more"
    return result


@contextmanager
def run_nginx(conf: str, workdir: Path, port: int) -> Iterator[str]:
    """nginx in the foreground with this config; yields its base URL, stops it by PID on exit."""
    nginx = require("nginx")
    conf_path = workdir / "nginx.conf"
    conf_path.write_text(conf)
    error_log = workdir / "error.log"
    command = [nginx, "-c", str(conf_path), "-p", f"{workdir}/", "-e", str(error_log), "-g", "daemon off;"]
    with (workdir / "output.log").open("wb") as output:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: process.poll() is not None or accepts(port), 10, "nginx to listen")
        if process.poll() is not None:
            raise RuntimeError(f"nginx exited with {process.returncode}:\n{_logs(workdir)}")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()  # SIGTERM: nginx's fast shutdown, workers included
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@contextmanager
def nginx_in_front(service_url: str, tweaks: Tweaks = AS_SHIPPED, *more_urls: str) -> Iterator[str]:
    """The reference config, with these tweaks, in front of `service_url` (and, round-robin, `more_urls`)."""
    require("nginx")
    workdir = Path(tempfile.mkdtemp(prefix="haystream-nginx-"))
    workdir.chmod(0o755)  # nginx's workers run as an unprivileged user when the master is root
    try:
        port = unused_port()
        upstreams = [urlsplit(url).netloc for url in (service_url, *more_urls)]
        conf = render(REFERENCE.read_text(), port=port, upstreams=upstreams, workdir=workdir, tweaks=tweaks)
        with run_nginx(conf, workdir, port) as url:
            yield url
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _logs(workdir: Path) -> str:
    return "\n".join(path.read_text(errors="replace") for path in sorted(workdir.glob("*.log")))
