"""KPI and compliance views over HTTP: per tenant, filtered, as JSON, CSV and Parquet."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from evidence.services import open_task_service
from projections import facts
from tests.api.conftest import ApiWorld, Tenant, act, create_task


def _views(api: ApiWorld, tenant: Tenant, path: str = "/v1/kpis", **params: str) -> Any:
    answer = api.client.get(path, params=params, headers=tenant.auth("compliance"))
    assert answer.status_code == 200, answer.text
    return answer.json()


def _seed(api: ApiWorld) -> tuple[str, str, str]:
    """Tenant a: one task approved by the head, one returned to the head; b: one draft."""
    a = api.a
    approved = create_task(api, a)["task_id"]
    returned = create_task(api, a)["task_id"]
    for task in (approved, returned):
        assert act(api, a, task, "submit", "u-chen").status_code == 200
        assert act(api, a, task, "approve", "u-wong").status_code == 200
    answer = act(api, a, returned, "return", "u-lee", to_step="head", reason="wrong cost centre")
    assert answer.status_code == 200, answer.text
    other = create_task(api, api.b)["task_id"]
    return approved, returned, other


def test_the_views_count_only_the_callers_tasks(api: ApiWorld) -> None:
    approved, returned, other = _seed(api)
    a = _views(api, api.a)
    b = _views(api, api.b)
    assert a["tasks"] == {"total": 2, "by_status": {"in_progress": 2}}
    assert b["tasks"] == {"total": 1, "by_status": {"draft": 1}}
    assert a["choices"]["departments"] == ["procurement"]
    assert a["choices"]["templates"] == [{"id": "purchase", "name": "Purchase request"}]
    # One of the two submitted tasks was sent back (退回).
    assert a["rates"]["return"] == {"rate": 0.5, "count": 1, "of": 2}
    # Every act came from the test's iPhone.
    assert a["rates"]["mobile_acts"]["rate"] == 1.0
    head = next(s for s in a["waiting"]["by_step"] if s["step_key"] == "head")
    assert head["acts"] == 2
    # The returned task waits for the head again; the other for finance and legal.
    assert head["waiting_now"] == 1
    assert other not in str(a) and approved not in str(b) and returned not in str(b)
    assert a["log_position"] == api.ledger.store.tree_size() == 8


def test_compliance_names_the_breach_with_its_evidence(api: ApiWorld) -> None:
    approved, _, other = _seed(api)
    report = _views(api, api.a, "/v1/compliance")
    rules = {r["rule"]: r["breaches"] for r in report["rules"]}
    assert set(rules) == {
        "self_approval",
        "missing_identity_factor",
        "out_of_order",
        "after_deadline",
        "shared_device_or_ip",
        "new_device_or_ip",
        "timestamp_delay",
        "audit_failure",
    }
    # The test app reports one device for everybody: the initiator and the head share it.
    shared = [b for b in report["breaches"] if b["rule"] == "shared_device_or_ip"]
    assert approved in {b["task_id"] for b in shared}
    assert any("dev-1234" in b["evidence"] for b in shared)
    assert rules["self_approval"] == rules["out_of_order"] == 0
    assert other not in str(report)
    assert all(b["task_id"] != other for b in _views(api, api.b, "/v1/compliance")["breaches"])


def test_filters_select_template_department_and_period(api: ApiWorld) -> None:
    _seed(api)
    assert _views(api, api.a, template="no-such-template")["tasks"]["total"] == 0
    assert _views(api, api.a, department="finance")["tasks"]["total"] == 0
    assert _views(api, api.a, department="procurement")["tasks"]["total"] == 2
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    later = _views(api, api.a, since=tomorrow)
    assert later["tasks"]["total"] == 0 and later["throughput"]["by_day"] == []
    assert later["filters"]["since"].startswith(tomorrow)
    today = datetime.now(UTC).date().isoformat()
    days = _views(api, api.a, since=today, until=tomorrow)["throughput"]["by_day"]
    assert [(d["day"], d["created"]) for d in days] == [(today, 2)]


def test_bad_filters_are_refused_with_a_problem(api: ApiWorld) -> None:
    for params, words in (
        ({"since": "yesterday"}, "since must be a date"),
        ({"until": "2026-11-01T10:00:00"}, "needs a UTC offset"),
        ({"since": "2026-11-02", "until": "2026-11-01"}, "until must be after since"),
    ):
        answer = api.client.get("/v1/kpis", params=params, headers=api.a.auth("compliance"))
        assert answer.status_code == 422, params
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert words in answer.json()["detail"]


def test_tables_download_as_csv_and_parquet(api: ApiWorld) -> None:
    _seed(api)
    who = api.a.auth("compliance")
    csv = api.client.get("/v1/kpis/tables/waiting_by_step.csv", headers=who)
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    table = pl.read_csv(io.BytesIO(csv.content))
    assert "step_key" in table.columns and "head" in table["step_key"].to_list()
    parquet = api.client.get("/v1/kpis/tables/breaches.parquet", headers=who)
    assert parquet.status_code == 200
    breaches = pl.read_parquet(io.BytesIO(parquet.content))
    report = _views(api, api.a, "/v1/compliance")
    assert breaches.height == len(report["breaches"]) > 0
    assert set(breaches["rule"]) == {b["rule"] for b in report["breaches"]}
    overdue = api.client.get("/v1/kpis/tables/overdue.csv", headers=who)
    assert overdue.status_code == 200  # list columns (pending people) flattened for CSV
    missing = api.client.get("/v1/kpis/tables/no_such_table.csv", headers=who)
    assert missing.status_code == 404 and "breaches" in missing.json()["detail"]


def test_only_compliance_auditor_and_admin_keys_read_the_views(api: ApiWorld) -> None:
    for role, status in (
        ("compliance", 200),
        ("auditor", 200),
        ("admin", 200),
        ("app", 403),
        ("legal", 403),
    ):
        for path in ("/v1/kpis", "/v1/compliance", "/v1/kpis/tables/rates.csv"):
            answer = api.client.get(path, headers=api.a.auth(role))
            assert answer.status_code == status, (role, path, answer.text)


def test_a_restarted_server_starts_from_the_facts_it_saved(
    api: ApiWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(facts, "SNAPSHOT_MIN_ACTS", 1)
    _seed(api)
    first = _views(api, api.a)
    runtime = api.client.app.state.runtime  # type: ignore[attr-defined]
    runtime.kpi_facts.save_all()  # as the server does when it stops
    saved = api.ledger.settings.data_dir / "kpi-facts"
    # Only tenant a's facts were loaded (no follower here), so only they are saved.
    assert len(list(saved.glob("*/snap-*/manifest.json"))) == 1
    restarted = create_app(api.ledger, open_task_service(api.ledger), background=False)
    with TestClient(restarted) as client:
        answer = client.get("/v1/kpis", headers=api.a.auth("compliance"))
        assert answer.status_code == 200, answer.text
        cache = restarted.state.runtime.kpi_facts.for_tenant(api.a.tenant_id)
        assert cache.started_from == api.ledger.store.tree_size()
    again = answer.json()
    assert again["tasks"] == first["tasks"] and again["rates"] == first["rates"]
    assert again["waiting"] == first["waiting"]
