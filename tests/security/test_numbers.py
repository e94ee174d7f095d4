"""Whole numbers past what the databases hold (found by the long schemathesis campaign).

``GET /v1/templates/{id}?version=9223372036854775808`` and
``GET /v1/log/checkpoints/9223372036854775808/timestamp`` reached SQLite as a 64-bit
overflow and answered 500. Every integer the API takes now has an upper bound: template
versions at 2^31 - 1, log indexes and tree sizes at 2^53 - 1; past it, 422 naming the
parameter, nothing stored.
"""

from __future__ import annotations

import uuid

import pytest

from api.security import MAX_QUERY_INT, MAX_TEMPLATE_VERSION
from tests.api.conftest import ApiWorld, actor, end_user
from tests.security.conftest import assert_refused, footprint
from tests.workflow import seed_template

HUGE = [2**31, 2**63 - 1, 2**63, 2**64 - 1]


@pytest.mark.parametrize("value", HUGE)
def test_template_version_past_the_bound_is_422(api: ApiWorld, value: int) -> None:
    before = footprint(api)
    answer = api.client.get(
        "/v1/templates/purchase", params={"version": value}, headers=api.a.auth("app")
    )
    assert_refused(api, before, answer, 422, "invalid-request", "query.version")
    template = {**seed_template().to_json(), "version": value}
    stored = api.client.post(
        "/v1/templates",
        json=template,
        headers={**api.a.auth("admin"), "Idempotency-Key": uuid.uuid4().hex},
    )
    assert_refused(api, before, stored, 422, "invalid-template", f"at most {MAX_TEMPLATE_VERSION}")
    launched = api.post_signed(
        api.a,
        "/v1/tasks",
        {
            "actor": actor("u-chen"),
            "context": end_user(),
            "template": {"id": "purchase", "version": value},
            "title": "Overflow",
        },
    )
    assert_refused(api, before, launched, 422, "invalid-request", "template.version")


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/v1/log/inclusion", {"leaf_index": MAX_QUERY_INT + 1}, "query.leaf_index"),
        ("/v1/log/inclusion", {"leaf_index": 0, "tree_size": 2**63}, "query.tree_size"),
        ("/v1/log/consistency", {"first": 1, "second": 2**64}, "query.second"),
        ("/v1/log/entries", {"start": 2**63, "end": 2**63 + 1}, "query.start"),
        (f"/v1/log/checkpoints/{2**63}/timestamp", {}, "path.tree_size"),
    ],
)
def test_log_indexes_past_the_bound_are_422(
    api: ApiWorld, path: str, params: dict[str, int], field: str
) -> None:
    before = footprint(api)
    answer = api.client.get(path, params=params, headers=api.a.auth("auditor"))
    assert_refused(api, before, answer, 422, "invalid-request", field)
