"""The chart's IP databases: mounted from a volume or copied from an image by a locked-down
init container, handed to the server as RINGFENCE_IP_DB in the order given, and refused
without a source."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
from deploy.deploy_support import KUBE_VERSIONS, chart_copy, manifests, one, render

from server.cli import build_parser
from server.config import IP_DB_ENV

FROM_VOLUME = {
    "ipDatabases": {
        "enabled": True,
        "volume": {"persistentVolumeClaim": {"claimName": "geoip"}},
    }
}
FROM_IMAGE = {
    "ipDatabases": {
        "enabled": True,
        "files": ["GeoIP2-City.mmdb", "GeoLite2-ASN.mmdb"],
        "image": {"repository": "registry.internal/geoip", "tag": "2026-12-01", "path": "/data"},
    },
    "initContainers": [{"name": "fetch", "image": "busybox:1.36", "command": ["true"]}],
}


def _pod(values: dict[str, Any]) -> dict[str, Any]:
    return one(manifests(render(values)), "Deployment")["spec"]["template"]["spec"]  # type: ignore[no-any-return]


def _env(pod: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in pod["containers"][0]["env"]}


def test_off_by_default() -> None:
    pod = _pod({})
    assert IP_DB_ENV not in _env(pod)
    assert all(v["name"] != "ip-databases" for v in pod["volumes"])


def test_from_a_volume() -> None:
    pod = _pod(FROM_VOLUME)
    env = _env(pod)
    assert env[IP_DB_ENV] == (
        "/var/lib/ringfence/ipdb/GeoLite2-City.mmdb:/var/lib/ringfence/ipdb/GeoLite2-ASN.mmdb"
    )
    assert env["RINGFENCE_IP_DB_POLL"] == "10"
    (volume,) = [v for v in pod["volumes"] if v["name"] == "ip-databases"]
    assert volume["persistentVolumeClaim"] == {"claimName": "geoip"}
    (mount,) = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "ip-databases"]
    assert mount == {
        "name": "ip-databases",
        "mountPath": "/var/lib/ringfence/ipdb",
        "readOnly": True,
    }
    assert "initContainers" not in pod


def test_from_an_image() -> None:
    pod = _pod(FROM_IMAGE)
    init, fetch = pod["initContainers"]  # the databases first, then the user's own
    assert fetch["name"] == "fetch"
    assert init["image"] == "registry.internal/geoip:2026-12-01"
    assert init["command"] == [
        "sh",
        "-c",
        "cp /data/GeoIP2-City.mmdb /data/GeoLite2-ASN.mmdb /ipdb/",
    ]
    sc = init["securityContext"]
    assert sc["readOnlyRootFilesystem"]
    assert sc["runAsNonRoot"]
    assert sc["capabilities"] == {"drop": ["ALL"]}
    (volume,) = [v for v in pod["volumes"] if v["name"] == "ip-databases"]
    assert volume == {"name": "ip-databases", "emptyDir": {"sizeLimit": "512Mi"}}
    assert _env(pod)[IP_DB_ENV].endswith(
        "/GeoIP2-City.mmdb:/var/lib/ringfence/ipdb/GeoLite2-ASN.mmdb"
    )


@pytest.mark.parametrize("values", [FROM_VOLUME, FROM_IMAGE], ids=["volume", "image"])
@pytest.mark.parametrize("kube", KUBE_VERSIONS)
def test_valid_kubernetes(values: dict[str, Any], kube: str) -> None:
    for doc in manifests(render(values)):
        kubernetes_validate.validate(doc, kube, strict=True)


def test_the_server_reads_what_the_chart_sets(monkeypatch: pytest.MonkeyPatch) -> None:
    from server.config import from_namespace

    env = _env(_pod(FROM_VOLUME))
    for name in (IP_DB_ENV, "RINGFENCE_IP_DB_POLL"):
        monkeypatch.setenv(name, env[name])
    ns = build_parser().parse_args(["serve", "--rules", "."])
    config = from_namespace(ns)
    assert [p.name for p in config.ip_dbs] == ["GeoLite2-City.mmdb", "GeoLite2-ASN.mmdb"]
    assert config.ip_db_poll_s == 10


@pytest.mark.parametrize(
    ("ip", "message"),
    [
        ({"enabled": True}, "needs a source: ipDatabases.volume"),
        ({"enabled": True, "files": [], "volume": {"emptyDir": {}}}, "needs ipDatabases.files"),
        (
            {"enabled": True, "volume": {"emptyDir": {}}, "image": {"repository": "x"}},
            "choose one source for the IP databases",
        ),
    ],
    ids=["no source", "no files", "two sources"],
)
def test_refused_without_a_clear_source(tmp_path: Path, ip: dict[str, Any], message: str) -> None:
    chart = chart_copy(tmp_path, None, schema=False)
    with pytest.raises(helm_python.HelmRenderError) as err:
        render({"ipDatabases": ip}, chart=chart)
    assert message in str(err.value)
