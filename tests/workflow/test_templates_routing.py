"""Templates (validation, JSON round trip, conditions) and routing, with the seed story."""

from __future__ import annotations

import json

import pytest

from ledger.workflow import (
    AD_HOC_TEMPLATE,
    Condition,
    Directory,
    ParticipantRef,
    Placement,
    ReminderPolicy,
    Route,
    StepSpec,
    Template,
    ad_hoc_route,
    route,
)
from ledger.workflow.errors import FormFieldError, RoleUnresolved, RoutingError, TemplateError
from tests.workflow import (
    CFO,
    COMPLIANCE,
    DEPT_HEAD,
    FINANCE,
    INITIATOR,
    LEGAL,
    seed_directory,
    seed_form,
    seed_template,
)


def test_seed_story_12800_hkd_routes_head_then_countersign_then_cfo() -> None:
    r = route(seed_template(), seed_form("12800.00"), INITIATOR, seed_directory())
    assert [s.key for s in r.steps] == ["head", "finance_legal", "cfo", "sign", "cc"]
    assert [s.participants for s in r.steps[:3]] == [(DEPT_HEAD,), (FINANCE, LEGAL), (CFO,)]
    assert r.steps[1].mode == "countersign"
    assert (r.template_id, r.template_version, r.initiator) == ("purchase", 3, INITIATOR)


def test_seed_story_4000_hkd_skips_the_cfo() -> None:
    r = route(seed_template(), seed_form("4000"), INITIATOR, seed_directory())
    assert "cfo" not in [s.key for s in r.steps]


def test_exactly_5000_is_not_over_the_threshold_and_5000_01_is() -> None:
    def keys(amount: str) -> list[str]:
        return [
            s.key
            for s in route(seed_template(), seed_form(amount), INITIATOR, seed_directory()).steps
        ]

    assert "cfo" not in keys("5000.00")
    assert "cfo" in keys("5000.01")


def test_cross_border_adds_the_compliance_step() -> None:
    r = route(seed_template(), seed_form("100", cross_border=True), INITIATOR, seed_directory())
    step = next(s for s in r.steps if s.key == "compliance")
    assert step.participants == (COMPLIANCE, LEGAL)
    assert step.mode == "or_sign"


def test_amount_in_another_currency_is_refused_not_converted() -> None:
    form = {"amount": {"amount": "12800", "currency": "USD"}, "cross_border": False}
    with pytest.raises(FormFieldError, match="USD"):
        route(seed_template(), form, INITIATOR, seed_directory())


def test_plain_decimal_amount_uses_the_form_currency_field() -> None:
    cond = Condition("amount", ">", "5000", "HKD")
    assert cond.holds({"amount": "5000.5", "currency": "HKD"})
    assert not cond.holds({"amount": 5000, "currency": "HKD"})


@pytest.mark.parametrize("value", [12800.0, "12,800", "NaN", True, None])
def test_float_or_non_decimal_amount_is_refused(value: object) -> None:
    with pytest.raises(FormFieldError):
        Condition("amount", ">", "5000").holds({"amount": value})


def test_missing_form_field_is_a_clear_error() -> None:
    with pytest.raises(FormFieldError, match="'cross_border': is missing"):
        Condition("cross_border", "==", True).holds({})


def test_boolean_condition_needs_a_boolean_field() -> None:
    with pytest.raises(FormFieldError, match="true or false"):
        Condition("cross_border", "==", True).holds({"cross_border": "yes"})
    assert Condition("cross_border", "!=", True).holds({"cross_border": False})


def test_role_resolving_to_nobody_is_an_error() -> None:
    with pytest.raises(RoleUnresolved, match="cfo"):
        route(
            seed_template(),
            seed_form(),
            INITIATOR,
            Directory(
                users=seed_directory().users,
                department_roles=seed_directory().department_roles,
                roles={"finance": ("x",), "legal": ("y",)},
            ),
        )


def test_department_head_is_the_initiators_department_head() -> None:
    directory = seed_directory()
    assert directory.resolve("department_head", INITIATOR) == (DEPT_HEAD,)
    assert directory.resolve("department_head", "outsider") == ()


def test_no_applicable_step_is_an_error() -> None:
    only = StepSpec(
        "x",
        "X",
        "approver",
        "sequential",
        (ParticipantRef(user="a"),),
        condition=Condition("n", ">", "1"),
    )
    with pytest.raises(RoutingError, match="no step"):
        route(Template("t", 1, "T", (only,)), {"n": "0"}, INITIATOR, Directory())


def test_template_json_round_trip_is_exact() -> None:
    template = seed_template(
        allow_self_approval=True,
        identity_window_seconds=120,
        reminder_policy=ReminderPolicy(first_after_hours=24, every_hours=12, max_reminders=3),
    )
    assert route(template, seed_form(), INITIATOR, seed_directory()).reminder_policy == (
        template.reminder_policy
    )
    text = json.dumps(template.to_json(), ensure_ascii=False)
    assert Template.from_json(json.loads(text)) == template


def test_route_json_round_trip_is_exact() -> None:
    r = route(seed_template(), seed_form(), INITIATOR, seed_directory())
    assert Route.from_json(json.loads(json.dumps(r.to_json()))) == r


@pytest.mark.parametrize(
    ("mutate", "where"),
    [
        (lambda t: t.update(version=0), "version"),
        (lambda t: t.update(steps=[]), "steps"),
        (lambda t: t.update(extra=1), "unknown fields"),
        (lambda t: t["steps"][0].update(role="boss"), "role"),
        (lambda t: t["steps"][0].update(mode="parallel"), "mode"),
        (lambda t: t["steps"][0].update(participants=[]), "participants"),
        (lambda t: t["steps"][0].update(participants=[{"user": "a", "role": "b"}]), "participant"),
        (lambda t: t["steps"][0].update(required_factors=["retina"]), "retina"),
        (lambda t: t["steps"][0].update(deadline_hours=0), "deadline_hours"),
        (
            lambda t: t["steps"][0].update(
                placements=[{"page": 1, "x1": 0, "y1": 0, "x2": 1, "y2": 1}]
            ),
            "only signer",
        ),
        (
            lambda t: t["steps"][4].update(
                placements=[{"page": 1, "x1": 5, "y1": 0, "x2": 1, "y2": 1}]
            ),
            "x1 < x2",
        ),
        (
            lambda t: t["steps"][2].update(
                condition={"field": "amount", "op": ">", "value": 5000.0}
            ),
            "decimal string",
        ),
        (
            lambda t: t["steps"][2].update(condition={"field": "amount", "op": "~", "value": "1"}),
            "op",
        ),
        (
            lambda t: t["steps"][3].update(
                condition={"field": "cross_border", "op": ">", "value": True}
            ),
            "boolean",
        ),
        (lambda t: t["steps"][1].update(key="head"), "unique"),
        (lambda t: t.update(reminder_policy={"every_hours": 1}), "reminder_policy"),
        (
            lambda t: t.update(
                reminder_policy={"first_after_hours": 0, "every_hours": 1, "max_reminders": 1}
            ),
            "first_after_hours",
        ),
    ],
)
def test_invalid_template_json_is_refused_naming_the_problem(mutate, where) -> None:  # type: ignore[no-untyped-def]
    data = json.loads(json.dumps(seed_template().to_json()))
    mutate(data)
    with pytest.raises(TemplateError, match=where):
        Template.from_json(data)


def test_placement_needs_a_real_page() -> None:
    with pytest.raises(TemplateError, match="page"):
        Placement(0, 1, 1, 2, 2)


def test_an_ad_hoc_task_routes_like_a_template_and_says_so() -> None:
    steps = (
        StepSpec("read", "Read", "viewer", "countersign", (ParticipantRef(user="u-a"),)),
        StepSpec("approve", "Approve", "approver", "or_sign", (ParticipantRef(role="cfo"),)),
    )
    r = ad_hoc_route(INITIATOR, steps, seed_directory(), name="Quick sign-off")
    assert (r.template_id, r.template_version, r.template_name) == (
        AD_HOC_TEMPLATE,
        1,
        "Quick sign-off",
    )
    assert [s.participants for s in r.steps] == [("u-a",), (CFO,)]
    with pytest.raises(TemplateError, match="steps"):
        ad_hoc_route(INITIATOR, (), seed_directory())


def test_directory_json_round_trip_and_refusals() -> None:
    directory = seed_directory()
    assert Directory.from_json(json.loads(json.dumps(directory.to_json()))) == directory
    for bad in (
        [],
        {"users": {"u-1": {"display_name": " "}}},
        {"users": {"u-1": {"display_name": "A", "salary": "1"}}},
        {"roles": {"cfo": []}},
        {"department_roles": {"procurement": {"department_head": "u-1"}}},
        {"groups": {}},
    ):
        with pytest.raises(TemplateError):
            Directory.from_json(bad)
