"""A real redis-server for tests: start on a free 127.0.0.1 port, pause, resume, restart.

Importable helper (no fixtures here) so every test folder can build its own fixture:

    server = RedisServer.start(tmp_path)    # raises RedisUnavailable if not installed
    server.url                              # "redis://127.0.0.1:<port>/0"
    server.pause(); server.resume()         # SIGSTOP / SIGCONT: a hung server
    server.kill(); server.restart()         # same port, empty data (persistence is off)
    server.stop()
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

REDIS_SERVER_ENV = "RINGFENCE_REDIS_SERVER"  # override the binary's path
_START_TIMEOUT_S = 10.0


class RedisUnavailable(RuntimeError):
    """redis-server is not installed or would not start."""


def find_redis_server() -> str:
    path = os.environ.get(REDIS_SERVER_ENV) or shutil.which("redis-server")
    if not path and Path("/usr/bin/redis-server").exists():
        path = "/usr/bin/redis-server"
    if not path:
        raise RedisUnavailable(
            "redis-server not found: install it (apt-get install redis-server) or set "
            f"{REDIS_SERVER_ENV} to its path; CI installs it"
        )
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def answers_ping(port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as s:
            s.sendall(b"*1\r\n$4\r\nPING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class RedisServer:
    binary: str
    workdir: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    @classmethod
    def start(cls, workdir: Path, port: int | None = None) -> RedisServer:
        workdir.mkdir(parents=True, exist_ok=True)
        server = cls(find_redis_server(), workdir, port or free_port())
        server._spawn()
        return server

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError("redis-server is not running")
        return self.process.pid

    def _spawn(self) -> None:
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.workdir),
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--logfile", str(self.workdir / "redis.log"),
        ]  # fmt: skip
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode() if self.process.stderr else ""
                log = self.workdir / "redis.log"
                detail = err or (log.read_text() if log.exists() else "")
                self.process = None
                raise RedisUnavailable(f"redis-server exited at start: {detail.strip()[-500:]}")
            if answers_ping(self.port):
                return
            time.sleep(0.02)
        self.stop()
        raise RedisUnavailable(f"redis-server did not answer PING within {_START_TIMEOUT_S} s")

    def pause(self) -> None:
        """SIGSTOP: the socket stays open and accepts connections, nothing answers."""
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL, as a crash would: clients see the connection drop."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def restart(self) -> None:
        """Kill (if running) and start again on the same port, empty."""
        self.kill()
        self._spawn()

    def stop(self) -> None:
        if self.process is None:
            return
        self.resume()  # a stopped process cannot act on SIGTERM
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None
