"""The signing example in docs/api.md works as printed, and stock JOSE code verifies it."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from jwcrypto import jwk, jws

from tests.api.conftest import ApiWorld, actor, end_user

DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def example() -> dict[str, Any]:
    (code,) = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    namespace: dict[str, Any] = {}
    exec(compile(code, str(DOC), "exec"), namespace)
    return namespace


def test_the_documented_signing_creates_a_task(api: ApiWorld) -> None:
    signed = example()["signed"]
    body, headers = signed(
        {
            "actor": actor("u-chen"),
            "context": end_user(),
            "template": {"id": "purchase"},
            "title": "Laptops",
            "form": {
                "item": "Laptops",
                "amount": {"amount": "800.00", "currency": "HKD"},
                "cross_border": False,
            },
        },
        api.a.app_key,
        api.a.kid,
    )
    answer = api.client.post("/v1/tasks", json=body, headers={**api.a.auth("app"), **headers})
    assert answer.status_code == 201, answer.text
    event = api.ledger.store.read_stream(api.ledger.store.entries(0, 1)[0].stream_id)[0].envelope
    assert event["event_id"] == body["event_id"]

    # A stock JOSE library verifies the kept signature and returns the body as sent.
    public = api.a.app_key.public_key()
    key = jwk.JWK.from_pyca(public)
    token = jws.JWS()
    token.deserialize(event["app_signature"]["value"])
    token.verify(key)
    assert json.loads(token.payload) == body
