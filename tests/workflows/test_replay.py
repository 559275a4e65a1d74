"""Workflows are a versioned contract: every history in tests/histories/, exported from real runs
(success, failure with compensation, cancellation) by `make histories`, must replay on the
workflow code of this commit. Operators upgrade with provisions in flight; a change to a
workflow's command sequence that is not behind `workflow.patched` fails here
(docs/workflows.md says how to change a workflow safely)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from core.contracts import RELEASE_NODE, ReleaseNodeInput
from workers import baremetal, cluster, network
from workers.common import workflow_runner
from workflows.node import ReleaseNode

HISTORIES = Path(__file__).resolve().parents[1] / "histories"
WORKFLOWS = [*baremetal.WORKFLOWS, *network.WORKFLOWS, *cluster.WORKFLOWS]


def histories(workflow_type: str | None = None) -> list[WorkflowHistory]:
    found = []
    for path in sorted(HISTORIES.glob("*/*.json")):
        if workflow_type is None or path.name.startswith(f"{workflow_type}."):
            found.append(WorkflowHistory.from_json(path.stem, json.loads(path.read_text())))
    return found


async def each(recorded: list[WorkflowHistory]) -> AsyncIterator[WorkflowHistory]:
    for history in recorded:
        yield history


def test_every_workflow_and_outcome_has_recorded_histories() -> None:
    recorded = Counter(
        (path.name.split(".")[0], path.name.split(".")[1]) for path in HISTORIES.glob("*/*.json")
    )
    types = {workflow_type for workflow_type, _ in recorded}
    assert types == {w.__name__ for w in WORKFLOWS}, types  # each is registered by its name
    outcomes = {outcome for _, outcome in recorded}
    assert {"completed", "failed", "canceled"} <= outcomes, outcomes


async def test_recorded_histories_replay_on_this_code() -> None:
    replayer = Replayer(workflows=WORKFLOWS, workflow_runner=workflow_runner())
    results = await replayer.replay_workflows(each(histories()), raise_on_replay_failure=False)
    failed = {run_id: repr(error) for run_id, error in results.replay_failures.items() if error}
    assert not failed, failed


@workflow.defn(name=RELEASE_NODE)
class ReleaseNodeWithAnExtraStep(ReleaseNode):
    """A deliberate change to ReleaseNode's command sequence, made without a patch."""

    @workflow.run
    async def run(self, request: ReleaseNodeInput):  # type: ignore[no-untyped-def]
        await workflow.sleep(1)  # a timer no recorded history has
        return await super().run(request)


@workflow.defn(name=RELEASE_NODE)
class ReleaseNodeWithAPatchedStep(ReleaseNode):
    """The same change behind `workflow.patched`: runs recorded before it replay without it."""

    @workflow.run
    async def run(self, request: ReleaseNodeInput):  # type: ignore[no-untyped-def]
        if workflow.patched("release-node-extra-timer"):
            await workflow.sleep(1)
        return await super().run(request)


async def test_an_unpatched_change_fails_the_replay_and_a_patched_one_does_not() -> None:
    recorded = histories(RELEASE_NODE)
    assert recorded, "no ReleaseNode history to replay"
    for changed, should_fail in ((ReleaseNodeWithAnExtraStep, True),
                                 (ReleaseNodeWithAPatchedStep, False)):  # fmt: skip
        replayer = Replayer(workflows=[changed], workflow_runner=workflow_runner())
        results = await replayer.replay_workflows(each(recorded), raise_on_replay_failure=False)
        failures = [e for e in results.replay_failures.values() if e]
        if should_fail:
            assert len(failures) == len(recorded), changed.__name__
            assert all("nondetermin" in repr(e).lower() for e in failures), failures
        else:
            assert not failures, failures
