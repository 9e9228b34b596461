"""A real `redis-server` for the store's tests: Debian's binary on a free loopback port, nothing on disk.

It runs in the foreground as our child (`--save '' --appendonly no`: no RDB or AOF file), is ready
once PING answers (with a deadline), and is stopped by its PID. `stop()` and `start()` again on
the same port let a test take Redis away mid-stream and bring it back.
"""

import socket
import subprocess
from pathlib import Path

from tests.support.binaries import require
from tests.support.servers import unused_port
from tests.support.waiting import _wait

START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0


class RedisServer:
    def __init__(self, log_dir: Path, port: int | None = None) -> None:
        self.binary = require("redis-server", "redis-server")
        self.port = port or unused_port()
        self.log = log_dir / f"redis-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> "RedisServer":
        command = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        command += ["--daemonize", "no", "--protected-mode", "yes", "--dir", str(self.log.parent)]
        with self.log.open("a") as output:
            self.process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
        process = self.process
        answered = _wait(lambda: process.poll() is not None or self.ping(), START_TIMEOUT)
        if process.poll() is not None:
            raise RuntimeError(f"redis-server exited on start:\n{self.log.read_text()}")
        if not answered:
            self.stop()
            raise TimeoutError(f"redis-server did not answer PING within {START_TIMEOUT} s")
        return self

    def stop(self) -> None:
        """SIGTERM by PID, then SIGKILL if it is still there after `STOP_TIMEOUT`."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT)

    def restart(self) -> None:
        self.stop()
        self.start()

    def ping(self) -> bool:
        """PING over a plain socket (no client library): True once the server answers +PONG."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def command(self, *args: str) -> bytes:
        """One command in RESP over a plain socket; its raw reply (enough for FLUSHALL, CLIENT LIST...)."""
        request = f"*{len(args)}\r\n".encode() + b"".join(f"${len(a.encode())}\r\n{a}\r\n".encode() for a in args)
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
            sock.sendall(request)
            return _read_reply(sock)

    def __enter__(self) -> "RedisServer":
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


def _read_reply(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n" not in data:
        data += sock.recv(65536)
    if data[:1] != b"$":
        return data
    header, _, rest = data.partition(b"\r\n")
    size = int(header[1:])
    while size >= 0 and len(rest) < size + 2:
        rest += sock.recv(65536)
    return rest[: max(size, 0)]
