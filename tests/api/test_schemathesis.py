"""A schemathesis run over the whole OpenAPI: no 5xx answer, no answer that breaks the schema.

Every operation of the app's own ``/openapi.json`` gets generated requests (positive and
negative), through the ASGI app, as tenant a's app key (bodies with a ``client_time`` get
the current time and a valid app signature, so generation reaches the handlers behind
the signature check) and as its admin key. Examples are few per operation so the run
stays within about a minute; CI runs it on both backends.

A longer campaign runs on demand: ``SCHEMATHESIS_MAX_EXAMPLES=500 pytest -s
tests/api/test_schemathesis.py`` (examples per operation and generation mode); each test
prints how many requests it sent.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from api import jws
from tests.api.conftest import ApiWorld, Tenant, now_text

#: Examples per operation and generation mode; small by default so CI stays quick.
MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "12"))
CHECKS = [not_a_server_error, response_schema_conformance]


def _prepare(case: Any, tenant: Tenant, role: str) -> dict[str, str]:
    """Headers for ``case``: the role's key, a fresh Idempotency-Key and, if it can be
    signed, the app's JWS over the body (with a current client time)."""
    headers = {**tenant.auth(role), "Idempotency-Key": uuid.uuid4().hex}
    body = case.body
    if isinstance(body, dict):
        if "client_time" in body:
            body["client_time"] = now_text()
        # A float or a non-JSON value cannot be signed: the ledger must refuse it, not fail.
        with contextlib.suppress(jws.SignatureError, TypeError, ValueError):
            headers["JWS-Signature"] = tenant.sign(body)
    return headers


def _run(api: ApiWorld, tenant: Tenant, role: str) -> int:
    schema = schemathesis.openapi.from_asgi("/openapi.json", api.client.app)
    calls = 0
    sent = [0]
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            test = _test_for(operation, mode, tenant, role, sent)
            try:
                test()
            except Unsatisfiable:
                # Nothing to make invalid (no parameters, no body): no negative case.
                assert mode is GenerationMode.NEGATIVE, operation.label
                continue
            calls += 1
    print(
        f"schemathesis as {role}: {sent[0]} requests, {calls} operation/mode runs, "
        f"{MAX_EXAMPLES} examples each at most"
    )
    return calls


def _test_for(
    operation: Any, mode: GenerationMode, tenant: Tenant, role: str, sent: list[int]
) -> Callable[[], None]:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    def test(case: Any) -> None:
        headers = _prepare(case, tenant, role)
        response = case.call(headers=headers)
        sent[0] += 1
        case.validate_response(response, checks=CHECKS, headers=headers)

    return test  # type: ignore[no-any-return]


def test_no_5xx_and_no_schema_violation_as_an_app(api: ApiWorld) -> None:
    assert _run(api, api.a, "app") >= 19


def test_no_5xx_and_no_schema_violation_as_an_admin(api: ApiWorld) -> None:
    assert _run(api, api.a, "admin") >= 19
