"""A task's timeline shows what the stored events say, for people."""

from __future__ import annotations

from ledger.timeline import ACTIONS, timeline
from ledger.workflow import Approve, Remind, Return, Transfer, VerifyIdentity
from tests.workflow import DEPT_HEAD, FINANCE, INITIATOR, LEGAL, launched


def test_each_act_is_one_line_with_who_what_where_and_identity() -> None:
    d = launched()
    d.act(DEPT_HEAD, Approve("同意"))
    d.act(INITIATOR, Remind(FINANCE))
    d.act(LEGAL, Transfer("u-deputy", "on leave"))
    d.act(FINANCE, VerifyIdentity("face", "liveness", "passed", "face-42"))
    d.act(FINANCE, Return("head", "quote missing"))
    entries = timeline(d.envelopes)
    assert [e.sequence for e in entries] == list(range(1, len(d.envelopes) + 1))
    assert [(e.action, e.action_zh) for e in entries[2:]] == [
        ("approved", "同意"),
        ("reminded", "催签"),
        ("transferred", "转交"),
        ("identity verified", "身份核验"),
        ("returned", "退回"),
    ]
    assert "route head → finance_legal → cfo → sign → cc" in entries[0].details
    assert entries[2].details == "step head: “同意”"
    assert entries[4].details == "u-ho → u-deputy at step finance_legal: on leave"
    assert entries[5].identity == "face passed (face-42)"
    assert entries[6].details == "from finance_legal to head: quote missing"
    assert entries[6].to_json()["actor"]["id"] == FINANCE


def test_every_event_type_has_names_in_both_languages() -> None:
    from ledger.events import EVENT_TYPES

    assert set(ACTIONS) == set(EVENT_TYPES)
    assert all(english and chinese for english, chinese in ACTIONS.values())
