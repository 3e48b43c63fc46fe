"""A bundle URL with credentials (``user:password@`` or a presigned query, whose signature
is the credential) never sits in the pod's environment, where ``kubectl describe``, crash
dumps and every sidecar can read it, nor in the install notes: the chart keeps it in a
Secret and the server reads it from a mounted file (re-read when the Secret changes)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from deploy.deploy_support import by_kind, manifests, one, render

PEM = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAexample\n-----END PUBLIC KEY-----\n"
SECRET = "pass-word-in-the-url"


def rendered(bundle: dict[str, Any]) -> tuple[dict[str, str], list[dict[str, Any]]]:
    text = render({"bundle": {"publicKeys": {"ci.pem": PEM}, **bundle}})
    return text, manifests(text)


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "url",
    [
        f"https://reader:{SECRET}@bundles.example/prod/bundle.tar.gz",
        f"https://bundles.s3.example/prod/bundle.tar.gz?X-Amz-Signature={SECRET}&X-Amz-Expires=600",
        f"https://bundles.example/b.tar.gz?sig={SECRET}",
    ],
)
def test_a_url_with_credentials_comes_from_a_secret(url: str) -> None:
    text, docs = rendered({"url": url})
    deployment = one(docs, "Deployment")
    assert SECRET not in json.dumps(deployment)
    assert SECRET not in text.get("ringfence/templates/NOTES.txt", "")
    env = {e["name"]: e.get("value") for e in container(docs)["env"]}
    assert "RINGFENCE_BUNDLE" not in env
    assert env["RINGFENCE_BUNDLE_FILE"] == "/etc/ringfence/bundle-url/url"
    secrets = {s["metadata"]["name"]: s for s in by_kind(docs, "Secret")}
    holder = secrets["rf-ringfence-bundle-url"]
    assert base64.b64decode(holder["data"]["url"]).decode() == url
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["bundle-url"]["secret"]["secretName"] == "rf-ringfence-bundle-url"
    assert volumes["bundle-url"]["secret"]["items"] == [{"key": "url", "path": "url"}]
    mounts = {m["name"]: m for m in container(docs)["volumeMounts"]}
    assert mounts["bundle-url"] == {
        "name": "bundle-url",
        "mountPath": "/etc/ringfence/bundle-url",
        "readOnly": True,
    }


def test_an_existing_secret_can_hold_the_url() -> None:
    text, docs = rendered({"urlSecret": "bundle-access", "urlSecretKey": "presigned"})
    env = {e["name"]: e.get("value") for e in container(docs)["env"]}
    assert env["RINGFENCE_BUNDLE_FILE"] == "/etc/ringfence/bundle-url/url"
    volumes = {v["name"]: v for v in one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert volumes["bundle-url"]["secret"]["secretName"] == "bundle-access"
    assert volumes["bundle-url"]["secret"]["items"] == [{"key": "presigned", "path": "url"}]
    assert "rf-ringfence-bundle-url" not in {s["metadata"]["name"] for s in by_kind(docs, "Secret")}
    assert "bundle-access" in text["ringfence/templates/NOTES.txt"]


def test_a_plain_url_stays_a_plain_variable() -> None:
    url = "https://bundles.example/prod/bundle.tar.gz"
    _, docs = rendered({"url": url})
    env = {e["name"]: e.get("value") for e in container(docs)["env"]}
    assert env["RINGFENCE_BUNDLE"] == url
    assert "RINGFENCE_BUNDLE_FILE" not in env
