"""The compliance dashboard in a real Chromium, over a real server and the seeded history.

Every number a chart draws is read back from its ``data-value`` attribute and compared with
what the seed made (:mod:`tests.kpi_seed`) and with ``/v1/kpis`` and ``/v1/compliance``
fetched over HTTP. Filters refetch and redraw; a task opens with its timeline; its evidence
pack downloads as a ZIP; the page speaks Chinese. Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections import Counter
from datetime import datetime
from typing import Any

import pytest

from tests.browser.conftest import ARTIFACTS, Console, Served
from tests.kpi_seed import Seeded, SeededTask

pytestmark = pytest.mark.browser

EXTERNAL_URL = re.compile(r"(?:https?:)?//(?!www\.w3\.org/2000/svg)[a-z0-9.-]+\.[a-z]{2,}", re.I)


def week(moment: datetime) -> str:
    year, number, _ = moment.isocalendar()
    return f"{year}-W{number:02d}"


def drawn(page: Any, chart: str) -> dict[str, float]:
    """``data-key`` → ``data-value`` of every bar or point of one chart."""
    pairs = page.eval_on_selector_all(
        f"[data-chart={chart}] [data-key]",
        "nodes => nodes.map(n => [n.dataset.key, n.dataset.value])",
    )
    return {key: float(value) for key, value in pairs}


def tile(page: Any, key: str) -> dict[str, str]:
    return dict(
        page.eval_on_selector(f"[data-tile={key}]", "n => ({...n.dataset, text: n.innerText})")
    )


def listed(page: Any, name: str) -> list[str]:
    """The task ids of one list (overdue, at-risk, breaches) as the page shows them."""
    return list(
        page.eval_on_selector_all(
            f"#{name} tbody tr", "rows => rows.map(r => r.dataset.taskId).filter(Boolean)"
        )
    )


def apply_filter(page: Any, selector: str, value: str) -> None:
    """Choose a filter value and wait until the page has redrawn for it."""
    if selector.startswith("select"):
        page.select_option(selector, value)
    else:
        page.fill(selector, value)
        page.dispatch_event(selector, "change")
    page.wait_for_function(
        "value => document.body.dataset.state === 'ready' && "
        "(document.body.dataset.query || '').includes(value)",
        arg=value,
    )


def seeded_throughput(tasks: list[SeededTask]) -> dict[str, float]:
    counted: Counter[str] = Counter()
    for task in tasks:
        counted[f"{week(task.created_at)}/created"] += 1
        if task.status == "completed" and task.finished_at is not None:
            counted[f"{week(task.finished_at)}/completed"] += 1
    return {key: float(n) for key, n in counted.items()}


def nonzero(values: dict[str, float]) -> dict[str, float]:
    return {key: value for key, value in values.items() if value}


def api_throughput(kpis: dict[str, Any]) -> dict[str, float]:
    drawn_values: dict[str, float] = {}
    for row in kpis["throughput"]["by_week"]:
        for series in ("created", "completed"):
            drawn_values[f"{row['week']}/{series}"] = float(row[series])
    return drawn_values


# -- the page and its files --------------------------------------------------------------


def test_page_and_assets_are_packaged_public_and_self_contained(served: Served) -> None:
    page = served.client.get("/dashboard")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    for name, media_type in (("dashboard.js", "text/javascript"), ("dashboard.css", "text/css")):
        asset = served.client.get(f"/dashboard/assets/{name}")
        assert asset.status_code == 200
        assert asset.headers["content-type"].startswith(media_type)
        assert asset.headers["x-content-type-options"] == "nosniff"
        assert not EXTERNAL_URL.search(asset.text), EXTERNAL_URL.search(asset.text)
    assert not EXTERNAL_URL.search(page.text)
    font = served.client.get("/dashboard/assets/noto-sans-sc.otf")
    assert font.status_code == 200
    assert font.headers["content-type"] == "font/otf"
    assert font.content.startswith(b"OTTO")
    for bad in ("index.html", "..%2Fapp.py", "missing.js", "Dashboard.JS", ".js"):
        refused = served.client.get(f"/dashboard/assets/{bad}")
        assert refused.status_code == 404, bad
        assert refused.headers["content-type"].startswith("application/problem+json")


def test_a_wrong_key_shows_the_problem_detail(page: Any, console: Console) -> None:
    console.expected.append("401 (Unauthorized)")  # Chromium logs the failed fetch itself
    page.goto("/dashboard")
    page.fill("#api-key", "elk_0000000000000000_not-a-key")
    page.click("#key-form button[type=submit]")
    page.wait_for_selector("#error:not([hidden])")
    assert "unknown or revoked" in page.inner_text("#error")
    assert page.is_visible("#key-form")


# -- what the charts draw -----------------------------------------------------------------


def test_charts_draw_the_seeded_numbers(dashboard: Any, served: Served) -> None:
    page, seeded = dashboard, served.seeded
    kpis = served.api("/v1/kpis")
    compliance = served.api("/v1/compliance")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)

    # Tasks and headline rates: the seed's counts, as the API reports and the page shows.
    tasks = list(seeded.tasks.values())
    assert tile(page, "tasks")["value"] == str(len(tasks)) == str(kpis["tasks"]["total"])
    assert kpis["tasks"]["by_status"] == seeded.by_status()
    expected_counts = {"rejection": 1, "return": 2, "electronic": 2}
    for rate, count in expected_counts.items():
        shown = tile(page, rate)
        assert int(shown["count"]) == count == kpis["rates"][rate]["count"], rate
    for rate, numbers in kpis["rates"].items():
        shown = tile(page, rate)
        assert float(shown["value"]) == pytest.approx(numbers["rate"]), rate
        assert f"{numbers['rate'] * 100:.1f}%" in shown["text"]
    assert 0 < kpis["rates"]["mobile_acts"]["rate"] < 1
    overall = kpis["cycle_time"]["overall"]
    assert float(tile(page, "cycle_median")["value"]) == overall["median_hours"]
    assert float(tile(page, "cycle_p90")["value"]) == overall["p90_hours"]

    # Throughput by week: created and completed per ISO week, as seeded.
    bars = drawn(page, "throughput")
    assert bars == api_throughput(kpis)
    assert nonzero(bars) == seeded_throughput(tasks)

    # Cycle time by month: a median and a p90 point for each month of finished history.
    months = {row["month"]: row for row in kpis["cycle_time"]["by_month"]}
    assert {m: r["tasks"] for m, r in months.items()} == seeded.completed_by_month()
    assert sorted(months) == seeded.months
    points = drawn(page, "cycle-time")
    assert points == {
        f"{month}/{series}": row[f"{series}_hours"]
        for month, row in months.items()
        for series in ("median", "p90")
    }
    assert page.locator(
        "[data-chart=cycle-time] text",
        has_text=str(points[f"{seeded.months[0]}/median"]).removesuffix(".0"),
    ).count()

    # Bottlenecks: ranked as the API ranks them, worst first.
    steps = drawn(page, "wait-by-step")
    ranked = kpis["waiting"]["by_step"][:10]
    assert list(steps) == [f"{r['template_id']}/{r['step_key']}" for r in ranked]
    assert list(steps.values()) == [r["median_hours"] for r in ranked]
    assert "purchase-request/finance_legal" in steps
    approvers = drawn(page, "wait-by-approver")
    assert approvers == {r["actor"]: r["median_hours"] for r in kpis["waiting"]["by_approver"][:10]}

    # Breaches: every rule's count, and the seeded breaches among the listed tasks.
    chips = dict(
        page.eval_on_selector_all(
            "#rules [data-rule]", "ns => ns.map(n => [n.dataset.rule, +n.dataset.value])"
        )
    )
    assert chips == {rule["rule"]: rule["breaches"] for rule in compliance["rules"]}
    breaches = listed(page, "breaches")
    assert breaches == [b["task_id"] for b in compliance["breaches"] if b["task_id"]]
    for story in ("out_of_order", "shared_device", "late"):
        assert seeded.ids(story)[0] in breaches, story
    assert chips["out_of_order"] >= 1 and chips["shared_device_or_ip"] >= 1

    # Overdue and at-risk tasks.
    assert listed(page, "at-risk") == [t["task_id"] for t in kpis["at_risk"]]
    assert set(listed(page, "at-risk")) == set(seeded.ids("at_risk"))
    assert listed(page, "overdue") == [t["task_id"] for t in kpis["overdue"]]


def test_day_view_draws_the_days(dashboard: Any, served: Served) -> None:
    page = dashboard
    page.click("[data-granularity=day]")
    page.wait_for_selector("[data-chart=throughput] [data-key*='-W'] >> nth=0", state="detached")
    kpis = served.api("/v1/kpis")
    expected = {
        f"{row['day']}/{series}": float(row[series])
        for row in kpis["throughput"]["by_day"]
        for series in ("created", "completed")
    }
    assert drawn(page, "throughput") == expected
    created = Counter(t.created_at.strftime("%Y-%m-%d") for t in served.seeded.tasks.values())
    assert {k: v for k, v in expected.items() if k.endswith("/created") and v} == {
        f"{day}/created": float(n) for day, n in created.items()
    }


# -- filters ------------------------------------------------------------------------------


def test_template_filter_redraws_with_that_templates_tasks(dashboard: Any, served: Served) -> None:
    page, seeded = dashboard, served.seeded
    apply_filter(page, "select#filter-template", "expense-claim")
    claims = seeded._matching({"template_id": "expense-claim"})
    assert tile(page, "tasks")["value"] == str(len(claims))
    assert nonzero(drawn(page, "throughput")) == seeded_throughput(claims)
    kpis = served.api("/v1/kpis", template="expense-claim")
    assert drawn(page, "throughput") == api_throughput(kpis)
    assert set(drawn(page, "wait-by-step")) == {"expense-claim/head", "expense-claim/finance"}
    assert listed(page, "at-risk") == [t["task_id"] for t in kpis["at_risk"]]
    assert set(listed(page, "at-risk")) == {t.task_id for t in claims if t.story == "at_risk"}


def test_department_filter_redraws_with_that_departments_tasks(
    dashboard: Any, served: Served
) -> None:
    page, seeded = dashboard, served.seeded
    apply_filter(page, "select#filter-department", "marketing")
    marketing = seeded._matching({"department": "marketing"})
    assert tile(page, "tasks")["value"] == str(len(marketing))
    assert nonzero(drawn(page, "throughput")) == seeded_throughput(marketing)
    months = {k.split("/")[0] for k in drawn(page, "cycle-time")}
    assert months == set(seeded.completed_by_month(department="marketing"))
    kpis = served.api("/v1/kpis", department="marketing")
    assert drawn(page, "cycle-time") == {
        f"{row['month']}/{series}": row[f"{series}_hours"]
        for row in kpis["cycle_time"]["by_month"]
        for series in ("median", "p90")
    }
    # Both filters at once: marketing's expense claims only.
    apply_filter(page, "select#filter-template", "expense-claim")
    both = [t for t in marketing if t.template_id == "expense-claim"]
    assert tile(page, "tasks")["value"] == str(len(both))


def test_period_filter_keeps_one_month(dashboard: Any, served: Served) -> None:
    page, seeded = dashboard, served.seeded
    month = seeded.months[1]
    start = datetime.strptime(month, "%Y-%m")
    end = start.replace(year=start.year + (start.month == 12), month=start.month % 12 + 1)
    apply_filter(page, "#filter-since", start.strftime("%Y-%m-%d"))
    apply_filter(page, "#filter-until", end.strftime("%Y-%m-%d"))
    assert {k.split("/")[0] for k in drawn(page, "cycle-time")} == {month}
    in_month = [t for t in seeded.tasks.values() if t.created_at.strftime("%Y-%m") == month]
    assert nonzero(drawn(page, "throughput")) == seeded_throughput(in_month)
    completed = seeded.completed_by_month()[month]
    median = drawn(page, "cycle-time")[f"{month}/median"]
    kpis = served.api("/v1/kpis", since=start.strftime("%Y-%m-%d"), until=end.strftime("%Y-%m-%d"))
    assert kpis["cycle_time"]["by_month"][0]["tasks"] == completed
    assert median == kpis["cycle_time"]["by_month"][0]["median_hours"]
    # Reset brings every month back.
    page.click("#filters button[type=reset]")
    page.wait_for_function(
        "() => document.body.dataset.state === 'ready' && !document.body.dataset.query"
    )
    assert {k.split("/")[0] for k in drawn(page, "cycle-time")} == set(seeded.months)


# -- drill-down and evidence pack ---------------------------------------------------------


def test_clicking_a_task_opens_its_state_and_timeline(dashboard: Any, served: Served) -> None:
    page, seeded = dashboard, served.seeded
    task_id = seeded.ids("at_risk")[0]
    page.click(f"#at-risk button[data-task-id='{task_id}']")
    page.wait_for_selector(f"#drill[data-task-id='{task_id}'][data-state=ready]")
    timeline = served.api(f"/v1/tasks/{task_id}/timeline")["entries"]
    items = page.eval_on_selector_all("#drill-timeline li", "ns => ns.map(n => n.dataset.type)")
    assert items == [entry["type"] for entry in timeline]
    assert items[:2] == ["task.created", "task.submitted"]
    panel = page.inner_text("#drill")
    state = served.api(f"/v1/tasks/{task_id}")
    assert state["title"] in panel and state["status"] == "in_progress"
    assert all(user in panel for user in state["pending"])
    assert timeline[0]["actor"]["name"] in panel
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-task.png"))
    page.click("#drill-close")
    assert page.is_hidden("#drill")


def test_evidence_pack_downloads_as_a_zip(dashboard: Any, served: Served) -> None:
    page, seeded = dashboard, served.seeded
    task_id = seeded.ids("late")[0]
    page.click(f"#breaches button[data-task-id='{task_id}']")
    page.wait_for_selector(f"#drill[data-task-id='{task_id}'][data-state=ready]")
    with page.expect_download(timeout=120_000) as waiting:
        page.click("#make-pack")
    download = waiting.value
    assert download.suggested_filename == f"evidence-{task_id}.zip"
    data = download.path().read_bytes()
    assert data.startswith(b"PK")
    with zipfile.ZipFile(io.BytesIO(data)) as pack:
        assert "manifest.json" in pack.namelist()
        assert task_id in pack.read("manifest.json").decode()
    assert page.is_visible("#pack-link")
    assert "SHA-256" in page.inner_text("#pack-status")


# -- Chinese ------------------------------------------------------------------------------


def test_chinese_switch_translates_the_labels(dashboard: Any, served: Served) -> None:
    page = dashboard
    page.click("[data-lang=zh]")
    assert page.inner_text("h1") == "合规看板"
    assert page.get_attribute("html", "lang") == "zh-CN"
    text = page.inner_text("body")
    for label in ("审批周期", "瓶颈排名", "退回率", "逾期任务", "合规违规", "临期任务", "拒绝率"):
        assert label in text, label
    for english in ("Bottleneck ranking", "Return rate", "Overdue tasks", "Compliance breaches"):
        assert english not in text, english
    compliance = served.api("/v1/compliance")
    for rule in compliance["rules"]:
        assert rule["title_zh"] in page.inner_text(f"#rules [data-rule={rule['rule']}]")
    assert page.inner_text("#filter-template option[value='']") == "全部"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-zh.png"), full_page=True)
    # The choice survives a reload; English comes back with one click.
    page.reload()
    page.wait_for_selector("body[data-state=ready]")
    assert page.inner_text("h1") == "合规看板"
    page.click("[data-lang=en]")
    assert page.inner_text("h1") == "Compliance dashboard"


def test_seeded_numbers_are_self_consistent(served: Served) -> None:
    seeded: Seeded = served.seeded
    assert len(seeded.months) == 3
    assert all(seeded.completed_by_month()[m] for m in seeded.months)
    assert {t.template_id for t in seeded.tasks.values()} >= {"expense-claim", "purchase-request"}
    assert {t.department for t in seeded.tasks.values()} == {"procurement", "marketing"}
