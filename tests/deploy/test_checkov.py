"""checkov on the rendered chart and the Dockerfile: every finding is either fixed or on the
list below with its reason, and the same list is in docs/operations.md ("Supply chain")."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy.deploy_support import DOCKERFILE, REPO, production_values, render

pytestmark = pytest.mark.slow

CHECKOV = REPO / ".tools" / "checkov" / "bin" / "checkov"
DOCS = REPO / "docs" / "operations.md"
RULES = {"demo": {"policy.rf": "# policy\n"}}
PEM = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAexample\n-----END PUBLIC KEY-----\n"
VARIANTS: dict[str, dict[str, Any]] = {
    "defaults": {"rules": RULES},
    "production": production_values(),
    "bundle": {
        "bundle": {"url": "https://b.example.internal/r.tar.gz", "publicKeys": {"k.pem": PEM}}
    },
}

# check id -> why it stays. Keep docs/operations.md ("checkov findings") in step.
ACCEPTED = {
    "CKV_K8S_11": "no CPU limit on the server on purpose: CFS throttling shows as tail latency",
    "CKV_K8S_15": "pull policy IfNotPresent: production pins image.digest, which is immutable",
    "CKV_K8S_21": "`helm template` output has no namespace; Helm installs into the release's",
    "CKV_K8S_43": "the defaults cannot know a digest: production sets image.digest",
    "CKV_K8S_8": "the helm test pod runs once to completion: a liveness probe means nothing",
    "CKV_K8S_9": "the helm test pod runs once to completion: a readiness probe means nothing",
    "CKV_DOCKER_7": "FROM ${BASE_IMAGE}: checkov cannot read the ARG, whose default is by digest",
}


def checkov(*args: str) -> list[dict[str, Any]]:
    if not CHECKOV.exists():
        pytest.fail(f"{CHECKOV} missing: `make tools` installs checkov")
    result = subprocess.run(
        [str(CHECKOV), *args, "--quiet", "--skip-download", "--output", "json"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode in (0, 1), result.stderr[-2000:]
    data = json.loads(result.stdout)
    reports = data if isinstance(data, list) else [data]
    return [f for r in reports for f in r.get("results", {}).get("failed_checks", [])]


@pytest.fixture(scope="module")
def findings(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    out = tmp_path_factory.mktemp("rendered")
    for name, values in VARIANTS.items():
        docs = [
            text
            for path, text in sorted(render(values).items())
            if not path.endswith("NOTES.txt") and any(yaml.safe_load_all(text))
        ]
        (out / f"{name}.yaml").write_text("\n---\n".join(docs))
    return checkov("--directory", str(out), "--framework", "kubernetes") + checkov(
        "--file", str(DOCKERFILE), "--framework", "dockerfile"
    )


def test_every_finding_is_accepted_with_a_reason(findings: list[dict[str, Any]]) -> None:
    unexpected = sorted(
        {f"{f['check_id']} {f['check_name']} ({f['resource']})" for f in findings}
        - {
            f"{f['check_id']} {f['check_name']} ({f['resource']})"
            for f in findings
            if f["check_id"] in ACCEPTED
        }
    )
    assert unexpected == [], "fix these or add them, with a reason, to ACCEPTED and the docs"


def test_no_accepted_finding_is_stale(findings: list[dict[str, Any]]) -> None:
    assert set(ACCEPTED) <= {f["check_id"] for f in findings}, "drop fixed findings from the list"


def test_the_docs_list_the_same_findings() -> None:
    text = DOCS.read_text().split("### checkov findings", 1)[1]
    documented = {line.split("`")[1] for line in text.splitlines() if line.startswith("| `CKV")}
    assert documented == set(ACCEPTED)


def test_checkov_can_fail(tmp_path: Path) -> None:
    bad = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "bad", "namespace": "risk"},
        "spec": {
            "containers": [
                {"name": "c", "image": "x:latest", "securityContext": {"privileged": True}}
            ]
        },
    }
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    ids = {
        f["check_id"] for f in checkov("--directory", str(tmp_path), "--framework", "kubernetes")
    }
    assert "CKV_K8S_16" in ids  # privileged container
