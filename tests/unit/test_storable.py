"""What nodes report is kept as JSONB: a NUL anywhere in it is refused when it is validated."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from core.cluster_report import ClusterReport
from core.facts import NodeFacts


@pytest.mark.parametrize(
    "facts",
    [
        {"kernel_cmdline": "quiet\x00"},
        {"kernel_cmdline": "quiet", "bios": {"Key\x00": "v"}},
        {"kernel_cmdline": "quiet", "bios": {"Key": "v\x00"}},
        {"kernel_cmdline": "quiet", "nics": [{"name": "eth0", "mac": "52:54\x00"}]},
    ],
)
def test_nul_in_facts_is_refused(facts: dict[str, object]) -> None:
    with pytest.raises(ValidationError, match="NUL"):
        NodeFacts.model_validate(facts)


def test_other_text_is_kept_as_reported() -> None:
    facts = NodeFacts.model_validate({"kernel_cmdline": "quiet \u00e9\t", "bios": {"K": "v"}})
    assert facts.kernel_cmdline == "quiet \u00e9\t" and facts.bios == {"K": "v"}
    report = ClusterReport.model_validate({"nodes": [{"name": "c-1", "state": "idle"}]})
    assert report.nodes[0].name == "c-1"
    with pytest.raises(ValidationError, match="NUL"):
        ClusterReport.model_validate({"nodes": [{"name": "c-1", "state": "idle\x00"}]})
