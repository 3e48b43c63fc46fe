"""A real OCI registry for tests (Debian's docker-registry, the CNCF distribution server) on a
free 127.0.0.1 port, storing in a folder of the test's own; artifacts are pushed with the
ORAS client, as a release pipeline would.

    registry = RegistryServer.start(tmp_path)              # anonymous pulls and pushes
    registry = RegistryServer.start(tmp_path, user="ci", password="pw")   # htpasswd
    registry.push(bundle, "risk/rules:prod")               # the manifest digest
    registry.reference("risk/rules:prod")                  # oci+http://127.0.0.1:<port>/...
    registry.requests()                                    # [(status, method, path), ...]
"""

from __future__ import annotations

import base64
import http.server
import json
import os
import re
import shutil
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from subprocess import Popen

import processes
from conftest_nginx import free_port

from server.bundle.oci import MEDIA_TYPE

CONFIG = """\
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {data}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
{auth}"""

AUTH = """\
auth:
  htpasswd:
    realm: ringfence-tests
    path: {htpasswd}
"""

TOKEN_AUTH = """\
auth:
  token:
    realm: {realm}
    service: ringfence-tests
    issuer: ringfence-test-issuer
    rootcertbundle: {cert}
"""


_ACCESS = re.compile(r'^\S+ - \S+ \[[^\]]+\] "(\w+) (\S+) [^"]*" (\d+)', re.M)


class RegistryUnavailable(RuntimeError):
    """docker-registry is not installed or would not start."""


def find_registry() -> str:
    path = os.environ.get("RINGFENCE_DOCKER_REGISTRY") or shutil.which("docker-registry")
    if not path:
        raise RegistryUnavailable(
            "docker-registry not found: install it (apt-get install docker-registry) or set "
            "RINGFENCE_DOCKER_REGISTRY; make test installs it"
        )
    return path


def _answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=0.5):
            return True
    except urllib.error.HTTPError:
        return True  # 401 with auth on: it is up
    except OSError:
        return False


@dataclass
class RegistryServer:
    work: Path
    port: int
    user: str = ""
    password: str = ""
    process: Popen[bytes] | None = None
    tokens: TokenService | None = None

    @classmethod
    def start(
        cls,
        work: Path,
        *,
        user: str = "",
        password: str = "",
        port: int = 0,
        tokens: TokenService | None = None,
    ) -> RegistryServer:
        """A registry storing in ``work``; ``port`` to start again where one was stopped;
        ``user``/``password`` for htpasswd, or ``tokens`` for bearer tokens from a token
        service (as Docker Hub, GHCR and Harbor do)."""
        work.mkdir(parents=True, exist_ok=True)
        auth = ""
        if tokens is not None:
            auth = TOKEN_AUTH.format(realm=tokens.realm, cert=tokens.cert)
        elif user:
            import bcrypt

            hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
            (work / "htpasswd").write_text(f"{user}:{hashed}\n")
            auth = AUTH.format(htpasswd=work / "htpasswd")
        port = port or free_port()
        (work / "config.yml").write_text(CONFIG.format(data=work / "data", port=port, auth=auth))
        server = cls(work, port, user, password, tokens=tokens)
        log = work / "registry.log"
        server.process = processes.start(
            [find_registry(), "serve", str(work / "config.yml")],
            what="docker-registry",
            ready=lambda: _answers(port),
            readiness="answer on /v2/",
            log=log,
            error=RegistryUnavailable,
            output_to_log=True,
        )
        return server

    def reference(self, name: str) -> str:
        return f"oci+http://127.0.0.1:{self.port}/{name}"

    def push(self, bundle: Path, name: str, *, media_type: str = MEDIA_TYPE) -> str:
        """Publish ``bundle`` as the one layer of an artifact at ``name`` (repo:tag) with the
        ORAS client; the manifest's digest."""
        import oras.client

        client = oras.client.OrasClient(
            hostname=f"127.0.0.1:{self.port}",
            insecure=True,
            # htpasswd registries answer with a Basic challenge, not a token realm.
            auth_backend="basic" if self.user and self.tokens is None else "token",
        )
        if self.user:
            client.login(
                hostname=f"127.0.0.1:{self.port}",
                username=self.user,
                password=self.password,
                tls_verify=False,
                config_path=str(self.work / "docker-config.json"),  # not ~/.docker
            )
        cwd = Path.cwd()
        os.chdir(bundle.parent)  # ORAS names the layer by the path it is given
        try:
            resp = client.push(
                files=[f"{bundle.name}:{media_type}"], target=f"127.0.0.1:{self.port}/{name}"
            )
        finally:
            os.chdir(cwd)
        resp.raise_for_status()
        return str(resp.headers["Docker-Content-Digest"])

    def requests(self) -> list[tuple[int, str, str]]:
        """Every request in the registry's access log: (status, method, path)."""
        log = self.work / "registry.log"
        text = log.read_text() if log.exists() else ""
        return [(int(m[3]), m[1], m[2]) for m in _ACCESS.finditer(text)]

    def stop(self) -> None:
        if self.process is not None:
            processes.stop(self.process)
            self.process = None


class TokenService:
    """The registry's token service: ``GET /token?service=...&scope=...`` with Basic
    credentials answers a JWT (ES256, its certificate in ``x5c``) for the repository asked;
    the registry checks it against ``cert``. Without the right credentials: 401. Every
    request is kept in ``seen`` as (scope, authorization header)."""

    def __init__(self, work: Path, user: str, password: str) -> None:
        from certs import self_signed
        from cryptography.hazmat.primitives import serialization

        work.mkdir(parents=True, exist_ok=True)
        self.key, cert = self_signed("ringfence test token signer")
        self.cert = work / "token-signer.pem"
        self.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self._x5c = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
        self._basic = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.user = user
        self.seen: list[tuple[str, str]] = []
        service = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                scope = query.get("scope", [""])[0]
                auth = self.headers.get("Authorization", "")
                service.seen.append((scope, auth))
                if auth != service._basic:
                    self.send_response(401)
                    self.end_headers()
                    return
                body = json.dumps({"token": service.token(scope)}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.realm = f"http://127.0.0.1:{self._server.server_address[1]}/token"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def token(self, scope: str) -> str:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

        access = []
        kind, _, rest = scope.partition(":")
        name = rest.rpartition(":")[0]
        if kind == "repository" and name:
            # Pull and push whatever was asked: ORAS reuses its first (pull) token for the
            # upload that follows, as some registries' services allow.
            access.append({"type": kind, "name": name, "actions": ["pull", "push"]})
        now = int(time.time())
        claims = {
            "iss": "ringfence-test-issuer",
            "sub": self.user,
            "aud": "ringfence-tests",
            "iat": now,
            "nbf": now - 60,
            "exp": now + 300,
            "jti": os.urandom(8).hex(),
            "access": access,
        }
        header = {"typ": "JWT", "alg": "ES256", "x5c": [self._x5c]}

        def part(value: object) -> str:
            raw = json.dumps(value, separators=(",", ":")).encode()
            return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

        signed = f"{part(header)}.{part(claims)}"
        r, s = decode_dss_signature(self.key.sign(signed.encode(), ec.ECDSA(hashes.SHA256())))
        sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return f"{signed}.{base64.urlsafe_b64encode(sig).rstrip(b'=').decode()}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
