"""Choose the replay test's histories from a recording (`make histories`): for every workflow
type and outcome, the smallest history of each distinct command sequence (activities,
timers, children, signals in the order the workflow issued them), at most PER_OUTCOME, so the
set covers the branches that ran without keeping near-duplicates.

python -m tests.histories.choose RECORDED_DIR  (writes tests/histories/<module>/...)"""

from __future__ import annotations

import json
import shutil
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PER_OUTCOME = 3
# The commands a workflow issues, by the events that record them.
COMMANDS = {
    "EVENT_TYPE_ACTIVITY_TASK_SCHEDULED": "activityTaskScheduledEventAttributes",
    "EVENT_TYPE_TIMER_STARTED": "timerStartedEventAttributes",
    "EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED": (
        "startChildWorkflowExecutionInitiatedEventAttributes"
    ),
    "EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED": (
        "signalExternalWorkflowExecutionInitiatedEventAttributes"
    ),
    "EVENT_TYPE_MARKER_RECORDED": "markerRecordedEventAttributes",
}


def shape(history: dict[str, Any]) -> tuple[str, ...]:
    """The workflow's command sequence: what a replay must reproduce."""
    found = []
    for event in history["events"]:
        kind = event["eventType"]
        if kind not in COMMANDS:
            continue
        attributes = event.get(COMMANDS[kind], {})
        name = (
            attributes.get("activityType", {}).get("name")
            or attributes.get("workflowType", {}).get("name")
            or attributes.get("signalName")
            or attributes.get("markerName")
            or ""
        )
        found.append(f"{kind.removeprefix('EVENT_TYPE_')}:{name}")
    return tuple(found)


def choose(recorded: Path) -> list[Path]:
    groups: dict[tuple[str, str, tuple[str, ...]], list[Path]] = defaultdict(list)
    for path in recorded.glob("*/*.json"):
        workflow_type, outcome = path.name.split(".")[:2]
        groups[workflow_type, outcome, shape(json.loads(path.read_text()))].append(path)
    by_outcome: dict[tuple[str, str], list[Path]] = defaultdict(list)
    for (workflow_type, outcome, _), paths in sorted(groups.items()):
        by_outcome[workflow_type, outcome].append(min(paths, key=lambda p: p.stat().st_size))
    chosen = []
    for paths in by_outcome.values():
        chosen += sorted(paths, key=lambda p: p.stat().st_size)[:PER_OUTCOME]
    return chosen


def main(recorded: Path) -> None:
    for old in HERE.glob("*/*.json"):
        old.unlink()
    for path in choose(recorded):
        target = HERE / path.parent.name / path.name
        target.parent.mkdir(exist_ok=True)
        shutil.copyfile(path, target)
        print(target.relative_to(HERE))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
