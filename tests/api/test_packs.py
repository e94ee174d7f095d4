"""Evidence packs and the KPI summary over HTTP: per tenant, per role, streamed."""

from __future__ import annotations

import hashlib
import io
import json
import uuid
import zipfile
from pathlib import Path

from tests.api.conftest import ApiWorld, act, create_task
from verifier import VerifierKey
from verifier.pack import verify_pack


def idem() -> dict[str, str]:
    return {"Idempotency-Key": uuid.uuid4().hex}


def test_legal_exports_and_downloads_a_pack_other_tenants_and_roles_cannot(api: ApiWorld) -> None:
    task = create_task(api, api.a)["task_id"]
    assert act(api, api.a, task, "submit", "u-chen").status_code == 200
    assert act(api, api.a, task, "approve", "u-wong", comment="同意").status_code == 200
    path = f"/v1/tasks/{task}/evidence-packs"
    assert api.client.post(path, headers={**api.a.auth("app"), **idem()}).status_code == 403
    assert api.client.post(path, headers={**api.b.auth("legal"), **idem()}).status_code == 404

    key = idem()
    made = api.client.post(
        path, params={"timezone": "Asia/Hong_Kong"}, headers={**api.a.auth("legal"), **key}
    )
    assert made.status_code == 201, made.text
    pack = made.json()
    assert pack["events"] == 3 and pack["task_id"] == task
    again = api.client.post(
        path, params={"timezone": "Asia/Hong_Kong"}, headers={**api.a.auth("legal"), **key}
    )
    assert again.json() == pack  # idempotent: the same pack, not a second export

    download = api.client.get(pack["download"], headers=api.a.auth("auditor"))
    assert download.status_code == 200
    assert download.headers["content-type"] == "application/zip"
    assert hashlib.sha256(download.content).hexdigest() == pack["sha256"]
    with zipfile.ZipFile(io.BytesIO(download.content)) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        assert "report.pdf" in archive.namelist()
    assert manifest["task_id"] == task
    for who in (api.b.auth("legal"), api.b.auth("auditor")):
        assert api.client.get(pack["download"], headers=who).status_code == 404
    assert api.client.get(pack["download"], headers=api.a.auth("app")).status_code == 403
    info = api.client.get(f"{pack['download']}/info", headers=api.a.auth("legal"))
    assert info.json()["sha256"] == pack["sha256"]


def test_a_pack_of_app_signed_acts_passes_the_independent_verifier(
    api: ApiWorld, tmp_path: Path
) -> None:
    """Apps' signatures travel in the pack with their public keys, and the verifier checks them."""
    task = create_task(api, api.a)["task_id"]
    for action, user in (("submit", "u-chen"), ("approve", "u-wong")):
        assert act(api, api.a, task, action, user).status_code == 200
    made = api.client.post(
        f"/v1/tasks/{task}/evidence-packs", headers={**api.a.auth("legal"), **idem()}
    )
    assert made.status_code == 201, made.text
    pack = tmp_path / "pack.zip"
    pack.write_bytes(api.client.get(made.json()["download"], headers=api.a.auth("legal")).content)
    with zipfile.ZipFile(pack) as archive:
        jwks = json.loads(archive.read("app-keys.jwks.json"))
    assert {k["kid"] for k in jwks["keys"]} >= {api.a.kid}
    assert all(k["kid"] != api.b.kid for k in jwks["keys"])  # only the tenant's own apps

    signer = api.ledger  # the embedded default: local TSA; the signing CA of the task service
    service_ca = api.client.app.state.runtime.tasks.signer.ca  # type: ignore[attr-defined]
    report = verify_pack(
        pack,
        ledger_keys=[VerifierKey.from_string(signer.key.verifier_key())],
        trust_roots=[service_ca.root_certificate],
        tsa_roots=signer.tsa_trust_roots,
    )
    assert report.indication == "TOTAL_PASSED", report.summary()
    app_step = next(s for s in report.steps if "app" in s.name.lower())
    assert app_step.verdict == "PASSED", app_step
