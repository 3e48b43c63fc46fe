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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import processes

REDIS_SERVER_ENV = "RINGFENCE_REDIS_SERVER"  # override the binary's path


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
        self.process = processes.start(
            args,
            what="redis-server",
            ready=lambda: answers_ping(self.port),
            readiness="answer PING",
            log=self.workdir / "redis.log",
            error=RedisUnavailable,
        )

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
        processes.stop(self.process)
        self.process = None


def _free_cluster_port() -> int:
    """A port whose cluster bus port (port + 10000) is free as well."""
    for _ in range(200):
        port = free_port()
        if port + 10000 > 65535:
            continue
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind(("127.0.0.1", port + 10000))
        except OSError:
            continue
        return port
    raise RedisUnavailable("no free port pair for a cluster node")


def find_redis_cli() -> str:
    server = Path(find_redis_server())
    beside = server.with_name("redis-cli")
    path = str(beside) if beside.exists() else shutil.which("redis-cli")
    if not path:
        raise RedisUnavailable("redis-cli not found (it ships with redis-server / redis-tools)")
    return path


@dataclass
class ClusterNodeServer(RedisServer):
    """One master of a test cluster. Its nodes.conf lives in its workdir, so a restart
    rejoins the cluster with the same id and slots (the data is gone: persistence is off)."""

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
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", "1000",
            # The slots of a dead master fail alone; the rest of the cluster serves on.
            "--cluster-require-full-coverage", "no",
        ]  # fmt: skip
        self.process = processes.start(
            args,
            what="cluster node",
            ready=lambda: answers_ping(self.port),
            readiness="answer PING",
            log=self.workdir / "redis.log",
            error=RedisUnavailable,
        )


@dataclass
class RedisClusterServers:
    """A real Redis Cluster of ``n`` masters (no replicas) on free loopback ports, made
    with ``redis-cli --cluster create``. ``url`` is for ``redis+cluster://``."""

    nodes: list[ClusterNodeServer]

    @classmethod
    def start(cls, workdir: Path, n: int = 3) -> RedisClusterServers:
        """Start and join the masters; a creation that stalls (a port lost to another
        process between picking and binding) is tried once more on fresh ports."""
        try:
            return cls._start(workdir / "a", n)
        except RedisUnavailable:
            return cls._start(workdir / "b", n)

    @classmethod
    def _start(cls, workdir: Path, n: int) -> RedisClusterServers:
        cli = find_redis_cli()
        nodes: list[ClusterNodeServer] = []
        try:
            for i in range(n):
                node_dir = workdir / f"node{i}"
                node_dir.mkdir(parents=True, exist_ok=True)
                node = ClusterNodeServer(find_redis_server(), node_dir, _free_cluster_port())
                node._spawn()
                nodes.append(node)
            addresses = [f"127.0.0.1:{node.port}" for node in nodes]
            try:
                done = subprocess.run(
                    [cli, "--cluster", "create", *addresses, "--cluster-yes"],
                    capture_output=True,
                    timeout=20,
                    check=False,
                )
            except subprocess.TimeoutExpired as exc:
                raise RedisUnavailable("cluster create did not finish in 20 s") from exc
            if done.returncode != 0:
                raise RedisUnavailable(f"cluster create failed: {done.stdout[-500:]!r}")
            cluster = cls(nodes)
            cluster.wait_ok()
            return cluster
        except BaseException:
            for node in nodes:
                node.stop()
            raise

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def cli(self, node: ClusterNodeServer, *args: str) -> str:
        done = subprocess.run(
            [find_redis_cli(), "-p", str(node.port), *args],
            capture_output=True,
            timeout=30,
            check=False,
            text=True,
        )
        return done.stdout.strip()

    def wait_ok(self, timeout_s: float = 30.0) -> None:
        """Until every running node says cluster_state:ok and knows every slot's owner."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            live = [n for n in self.nodes if n.process is not None]
            if all("cluster_state:ok" in self.cli(n, "cluster", "info") for n in live):
                return
            time.sleep(0.05)
        raise RedisUnavailable("the test cluster did not reach cluster_state:ok")

    def node_id(self, node: ClusterNodeServer) -> str:
        return self.cli(node, "cluster", "myid")

    def owner(self, slot: int) -> ClusterNodeServer:
        """The master serving ``slot``, from CLUSTER NODES of a live node."""
        live = next(n for n in self.nodes if n.process is not None)
        by_port = {n.port: n for n in self.nodes}
        for line in self.cli(live, "cluster", "nodes").splitlines():
            fields = line.split()
            if "master" not in fields[2].split(","):
                continue
            port = int(fields[1].split("@")[0].rsplit(":", 1)[1])
            for part in fields[8:]:
                if part.startswith("["):
                    continue  # a slot being migrated or imported
                lo, _, hi = part.partition("-")
                if int(lo) <= slot <= int(hi or lo):
                    return by_port[port]
        raise LookupError(f"no master serves slot {slot}")

    def migrate_slot(
        self, slot: int, target: ClusterNodeServer, pause: Callable[[], None] = lambda: None
    ) -> int:
        """Move ``slot`` to ``target`` as ``redis-cli --cluster reshard`` does, one key at a
        time (``pause`` runs between keys, so traffic meets the slot half moved). Returns
        the number of keys moved."""
        source = self.owner(slot)
        if source is target:
            return 0
        src_id, dst_id = self.node_id(source), self.node_id(target)
        self.cli(target, "cluster", "setslot", str(slot), "importing", src_id)
        self.cli(source, "cluster", "setslot", str(slot), "migrating", dst_id)
        moved = 0
        while True:
            keys = self.cli(source, "cluster", "getkeysinslot", str(slot), "10").split()
            if not keys:
                break
            for key in keys:
                self.cli(source, "migrate", "127.0.0.1", str(target.port), key, "0", "5000")
                moved += 1
                pause()
        for node in self.nodes:
            if node.process is not None:
                self.cli(node, "cluster", "setslot", str(slot), "node", dst_id)
        return moved

    def flush(self) -> None:
        for node in self.nodes:
            if node.process is not None:
                self.cli(node, "flushall")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
