"""A real nginx for tests: serves a folder on a free 127.0.0.1 port with a config written here.

    server = NginxServer.start(tmp_path, www)      # raises NginxUnavailable if not installed
    server.url("bundle.tar.gz")                    # http://127.0.0.1:<port>/bundle.tar.gz
    server.url("bundle.tar.gz", slow=True)         # the same file at ``rate`` bytes/s
    server.kill(); server.restart(rate="0")        # SIGKILL (mid-download), start again
    server.restart(token="new")                    # /private/ takes only the new token now
    NginxServer.start(tmp_path, www, tls=(cert, key))   # https:// instead of http://
    server.requests()                              # [(status, path), ...] from its access log

One process (``master_process off``), so a SIGKILL really ends every connection at once.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import processes

TOKEN = "bundle-token-for-tests"

CONFIG = """\
{user}
daemon off;
master_process off;
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/error.log info;
events {{ worker_connections 64; }}
http {{
    log_format plain '$status $request_uri';
    access_log {work}/access.log plain;
    client_body_temp_path {work}/tmp/body;
    proxy_temp_path {work}/tmp/proxy;
    fastcgi_temp_path {work}/tmp/fastcgi;
    uwsgi_temp_path {work}/tmp/uwsgi;
    scgi_temp_path {work}/tmp/scgi;
    types {{ application/gzip gz; }}
    default_type application/octet-stream;
    sendfile off;
    server {{
        listen 127.0.0.1:{port}{ssl};
        {certificates}
        root {www};
        location /slow/ {{
            alias {www}/;
            limit_rate {rate};
        }}
        location /private/ {{
            alias {www}/;
            if ($http_authorization != "Bearer {token}") {{ return 401; }}
        }}
        # Somewhere else on the same host, as a redirecting service would send a client.
        location /redirect/ {{
            return 302 {scheme}://127.0.0.1:{port}/internal/;
        }}
    }}
}}
"""


class NginxUnavailable(RuntimeError):
    """nginx is not installed or would not start."""


def find_nginx() -> str:
    path = os.environ.get("RINGFENCE_NGINX") or shutil.which("nginx")
    if not path and Path("/usr/sbin/nginx").exists():
        path = "/usr/sbin/nginx"
    if not path:
        raise NginxUnavailable(
            "nginx not found: install it (apt-get install nginx) or set RINGFENCE_NGINX; "
            "make test installs it"
        )
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class NginxServer:
    binary: str
    work: Path
    www: Path
    port: int
    rate: str = "64k"
    process: subprocess.Popen[bytes] | None = None
    token: str = TOKEN
    # (certificate chain, key) PEM files: serve https.
    tls: tuple[Path, Path] | None = None

    @classmethod
    def start(
        cls, work: Path, www: Path, rate: str = "64k", *, tls: tuple[Path, Path] | None = None
    ) -> NginxServer:
        (work / "tmp").mkdir(parents=True, exist_ok=True)
        www.mkdir(parents=True, exist_ok=True)
        server = cls(find_nginx(), work, www, free_port(), rate, tls=tls)
        server._spawn()
        return server

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    def url(self, name: str, *, slow: bool = False, private: bool = False) -> str:
        prefix = "/slow" if slow else "/private" if private else ""
        return f"{self.scheme}://127.0.0.1:{self.port}{prefix}/{name}"

    def _spawn(self) -> None:
        conf = self.work / "nginx.conf"
        # As root nginx would switch to an unprivileged user that cannot read pytest's
        # private temp folders; the test's own user is enough.
        user = "user root;" if os.geteuid() == 0 else ""
        certificates = ""
        if self.tls is not None:
            cert, key = self.tls
            certificates = f"ssl_certificate {cert}; ssl_certificate_key {key};"
        conf.write_text(
            CONFIG.format(
                user=user,
                work=self.work,
                www=self.www,
                port=self.port,
                rate=self.rate,
                token=self.token,
                ssl=" ssl" if self.tls else "",
                certificates=certificates,
                scheme=self.scheme,
            )
        )
        self.process = processes.start(
            [self.binary, "-c", str(conf), "-p", str(self.work), "-e", str(self.work / "err")],
            what="nginx",
            ready=lambda: _answers(self.port),
            readiness="listen",
            log=self.work / "error.log",
            error=NginxUnavailable,
        )

    def kill(self) -> None:
        """SIGKILL: every open download breaks off mid-body."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
            self.process = None

    def restart(
        self,
        rate: str | None = None,
        *,
        token: str | None = None,
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        self.kill()
        if rate is not None:
            self.rate = rate
        if token is not None:
            self.token = token
        if tls is not None:
            self.tls = tls
        self._spawn()

    def requests(self) -> list[tuple[int, str]]:
        log = self.work / "access.log"
        if not log.exists():
            return []
        out = []
        for line in log.read_text().splitlines():
            status, _, path = line.partition(" ")
            out.append((int(status), path))
        return out

    def stop(self) -> None:
        if self.process is None:
            return
        processes.stop(self.process)
        self.process = None


STREAM_CONFIG = """\
{user}
load_module {module};
daemon off;
master_process off;
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/error.log notice;
events {{ worker_connections 1024; }}
stream {{
    upstream backends {{
{servers}
    }}
    server {{
        listen 127.0.0.1:{port};
        proxy_pass backends;
        # A refused connection (a backend that stopped accepting) goes to the next one.
        proxy_connect_timeout 1s;
        proxy_next_upstream on;
    }}
}}
"""

STREAM_MODULES = (
    "/usr/lib/nginx/modules/ngx_stream_module.so",
    "/usr/lib64/nginx/modules/ngx_stream_module.so",
)


@dataclass
class NginxStreamProxy:
    """nginx as a TCP (layer 4) balancer in front of ``backends``, as a Kubernetes ClusterIP
    Service is: each client connection goes to one backend (round robin), and a backend
    that refuses a connection is skipped. Needs Debian's libnginx-mod-stream."""

    work: Path
    port: int
    backends: tuple[int, ...]
    process: subprocess.Popen[bytes] | None = None

    @classmethod
    def start(cls, work: Path, backends: tuple[int, ...]) -> NginxStreamProxy:
        module = next((m for m in STREAM_MODULES if Path(m).exists()), None)
        if module is None:
            raise NginxUnavailable(
                "nginx's stream module is missing: install libnginx-mod-stream; make test does"
            )
        work.mkdir(parents=True, exist_ok=True)
        proxy = cls(work, free_port(), backends)
        conf = work / "nginx-stream.conf"
        conf.write_text(
            STREAM_CONFIG.format(
                user="user root;" if os.geteuid() == 0 else "",
                module=module,
                work=work,
                port=proxy.port,
                servers="\n".join(f"        server 127.0.0.1:{p};" for p in backends),
            )
        )
        proxy.process = processes.start(
            [find_nginx(), "-c", str(conf), "-p", str(work), "-e", str(work / "err")],
            what="nginx (stream proxy)",
            ready=lambda: _answers(proxy.port),
            readiness="listen",
            log=work / "error.log",
            error=NginxUnavailable,
        )
        return proxy

    def stop(self) -> None:
        if self.process is not None:
            processes.stop(self.process)
            self.process = None
