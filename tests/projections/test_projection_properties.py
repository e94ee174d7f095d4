"""Random valid and invalid command sequences, stored, projected at random points (issue 3.6).

Each example launches a seed task in the real store and drives random commands (the
workflow property test's generator) by random actors at random times. Some commands are
stored without ``decide`` (events it would refuse: out of turn, unknown steps, unreadable
data), so the fold meets anomalies too. At random points the projection catches up, and
then its rows must equal ``rows_for`` of a fold of every stored stream.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ledger.store import LedgerStore
from ledger.workflow import EventDraftData
from ledger.workflow.errors import ActionRefused
from projections import TaskProjection
from tests.projections import Clock, StoredTask, launch, oracle
from tests.projections.conftest import OpenStore
from tests.workflow import DOC, INITIATOR, REV
from tests.workflow.test_state_fold_properties import (
    NEXT,
    PEOPLE,
    STEP_KEYS,
    actors,
    commands,
    gaps,
    next_move,
)

# Events appended as they are, bypassing decide: most are refused by decide, some the fold
# finds out of place, one it cannot read at all.
raw_events = st.one_of(
    st.builds(lambda k: EventDraftData("step.approved", {"step": k}), st.sampled_from(STEP_KEYS)),
    st.builds(
        lambda k: EventDraftData(
            "document.signed", {"step": k, "document_sha256": DOC, "revision_sha256": REV}
        ),
        st.sampled_from(STEP_KEYS),
    ),
    st.just(EventDraftData("task.submitted", {})),
    st.just(EventDraftData("task.completed", {})),
    st.builds(
        lambda k: EventDraftData("step.returned", {"step": k, "to_step": "head"}),
        st.sampled_from(STEP_KEYS),
    ),
    st.just(EventDraftData("task.created", {"title": "no route"})),
)
moves = st.one_of(
    st.tuples(actors, commands, gaps, st.booleans()),
    st.tuples(st.sampled_from(PEOPLE), raw_events, gaps, st.booleans()),
)
scripts = st.lists(moves, min_size=5, max_size=30)


class _Driver:
    """What ``next_move`` reads: the task's state."""

    def __init__(self, task: StoredTask) -> None:
        self.state = task.state


@pytest.fixture
def world(open_store: OpenStore) -> Iterator[tuple[LedgerStore, TaskProjection]]:
    store = open_store()
    with TaskProjection(store, batch=7) as projection:
        yield store, projection


def _examples(backend: str) -> int:
    return 60 if backend == "sqlite" else 25


def run_example(
    store: LedgerStore,
    projection: TaskProjection,
    clock: Clock,
    tasks: list[uuid.UUID],
    amount: str,
    cross_border: bool,
    script: list[Any],
) -> None:
    task = launch(store, clock, amount, cross_border)
    tasks.append(task.task_id)
    for actor_choice, command, gap, catch_up in script:
        clock.now += gap
        if isinstance(command, EventDraftData):
            task.append([command], actor_choice)
        else:
            pending = task.state.pending
            if isinstance(actor_choice, str):
                user = actor_choice
            else:
                user = pending[actor_choice % len(pending)] if pending else INITIATOR
            if command == NEXT:
                command = next_move(_Driver(task), user, clock.now)  # type: ignore[arg-type]
            with contextlib.suppress(ActionRefused):
                task.act(user, command, gap=timedelta(0))
        if catch_up:
            projection.catch_up()
            assert projection.position == store.tree_size()
            assert projection.dump() == oracle(store, tasks, safe=True)
    projection.catch_up()
    assert projection.dump() == oracle(store, tasks, safe=True)
    event(f"status: {task.state.status}")
    event(f"anomalies: {min(len(task.state.anomalies), 3)}")


def test_random_sequences_project_like_the_fold(
    backend: str, world: tuple[LedgerStore, TaskProjection], clock: Clock, tmp_path: Path
) -> None:
    store, projection = world
    tasks: list[uuid.UUID] = []

    @settings(
        max_examples=_examples(backend),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(
        amount=st.sampled_from(["4000", "12800.00"]),
        cross_border=st.booleans(),
        script=scripts,
    )
    def example(amount: str, cross_border: bool, script: list[Any]) -> None:
        run_example(store, projection, clock, tasks, amount, cross_border, script)

    example()
    # A cold rebuild over everything the examples stored gives the same rows.
    incremental = projection.dump()
    projection.rebuild()
    assert projection.dump() == incremental
