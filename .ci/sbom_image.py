"""A CycloneDX 1.6 SBOM of the image this runs in: the operating system and every Debian
package dpkg knows (with the licences its copyright file declares), the Python interpreter,
and every package of the service's venv (with its licence metadata).

Run by the Dockerfile's last step, inside the final image (standard library only), so it
describes exactly what ships; .ci/image.sh copies it to build/sbom-image.cdx.json.

    python3 sbom_image.py --venv /opt/venv --version 1.2.3 --created 2026-12-01T00:00:00Z
"""

from __future__ import annotations

import argparse
import email
import json
import platform
import re
import sys
import uuid
from pathlib import Path

DPKG_STATUS = Path("/var/lib/dpkg/status")
DOCS = Path("/usr/share/doc")
DEP5 = "https://www.debian.org/doc/packaging-manuals/copyright-format/1.0"
# What a classifier says, as the SPDX id a scanner matches on.
CLASSIFIERS = {
    "License :: OSI Approved :: Apache Software License": "Apache-2.0",
    "License :: OSI Approved :: MIT License": "MIT",
    "License :: OSI Approved :: BSD License": "BSD-3-Clause",
    "License :: OSI Approved :: Python Software Foundation License": "PSF-2.0",
    "License :: OSI Approved :: Mozilla Public License 2.0 (MPL 2.0)": "MPL-2.0",
    "License :: OSI Approved :: ISC License (ISCL)": "ISC",
    "License :: OSI Approved :: GNU Lesser General Public License v3 (LGPLv3)": "LGPL-3.0-only",
}


def os_release() -> dict[str, str]:
    out = {}
    for line in Path("/etc/os-release").read_text().splitlines():
        key, _, value = line.partition("=")
        out[key] = value.strip().strip('"')
    return out


def deb_packages() -> list[dict[str, str]]:
    """Installed packages from dpkg's database (what `dpkg-query -W` lists)."""
    packages = []
    for stanza in DPKG_STATUS.read_text(encoding="utf-8").split("\n\n"):
        fields = dict(re.findall(r"^([A-Za-z-]+): ?(.*)$", stanza, re.M))
        if fields.get("Status", "").endswith(" installed") and fields.get("Package"):
            packages.append(fields)
    return packages


def deb_licenses(name: str) -> list[dict[str, object]]:
    """The short licence names of a machine-readable (DEP-5) copyright file; otherwise a
    pointer to the file, never a guess."""
    path = DOCS / name / "copyright"
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    if not text.startswith("Format:") or DEP5 not in text.splitlines()[0].replace(
        "http:", "https:"
    ):
        return [{"license": {"name": f"see {path}"}}]
    names = sorted({m.strip() for m in re.findall(r"^License: *(\S[^\n]*)$", text, re.M)})
    return [{"license": {"name": n}} for n in names if n]


def python_licenses(meta: email.message.Message) -> list[dict[str, object]]:
    expression = meta.get("License-Expression")
    if expression:
        return [{"expression": expression}]
    ids = sorted({CLASSIFIERS[c] for c in meta.get_all("Classifier") or [] if c in CLASSIFIERS})
    if ids:
        return [{"license": {"id": i}} for i in ids]
    text = (meta.get("License") or "").strip()
    if text and "\n" not in text and len(text) < 80:
        return [{"license": {"name": text}}]
    return []


def venv_packages(venv: Path) -> list[email.message.Message]:
    found = []
    for metadata in sorted(venv.glob("lib/python3*/site-packages/*.dist-info/METADATA")):
        found.append(email.message_from_string(metadata.read_text(encoding="utf-8")))
    return found


def build(venv: Path, version: str, created: str) -> dict[str, object]:
    release = os_release()
    distro = f"{release.get('ID', 'debian')}-{release.get('VERSION_ID', '')}"
    components: list[dict[str, object]] = [
        {
            "type": "operating-system",
            "bom-ref": "os",
            "name": release.get("ID", "linux"),
            "version": release.get("VERSION_ID", ""),
            "description": release.get("PRETTY_NAME", ""),
        },
        {
            "type": "platform",
            "bom-ref": "interpreter",
            "name": "cpython",
            "version": platform.python_version(),
            "description": f"Python interpreter ({sys.executable})",
            "purl": f"pkg:generic/cpython@{platform.python_version()}",
            "licenses": [{"license": {"id": "PSF-2.0"}}],
        },
    ]
    for deb in sorted(deb_packages(), key=lambda d: d["Package"]):
        name, ver, arch = deb["Package"], deb.get("Version", ""), deb.get("Architecture", "")
        purl = f"pkg:deb/{release.get('ID', 'debian')}/{name}@{ver}?arch={arch}&distro={distro}"
        component: dict[str, object] = {
            "type": "library",
            "bom-ref": purl,
            "name": name,
            "version": ver,
            "purl": purl,
        }
        if licenses := deb_licenses(deb.get("Source", name).split()[0]) or deb_licenses(name):
            component["licenses"] = licenses
        components.append(component)
    for meta in venv_packages(venv):
        name, ver = meta["Name"], meta["Version"]
        purl = f"pkg:pypi/{name.lower().replace('_', '-')}@{ver}"
        component = {"type": "library", "bom-ref": purl, "name": name, "version": ver, "purl": purl}
        if licenses := python_licenses(meta):
            component["licenses"] = licenses
        components.append(component)
    serial = uuid.uuid5(uuid.NAMESPACE_URL, json.dumps(components, sort_keys=True))
    return {
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": f"urn:uuid:{serial}",
        "version": 1,
        "metadata": {
            "timestamp": created,
            "component": {
                "type": "container",
                "bom-ref": "image",
                "name": "ringfence",
                "version": version,
            },
        },
        "components": components,
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--venv", type=Path, required=True)
    parser.add_argument("--version", required=True)
    parser.add_argument("--created", required=True)
    parser.add_argument("-o", "--output", type=Path, required=True)
    ns = parser.parse_args()
    ns.output.parent.mkdir(parents=True, exist_ok=True)
    ns.output.write_text(json.dumps(build(ns.venv, ns.version, ns.created), indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
