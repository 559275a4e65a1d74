"""`dcgmi diag -j` parsed from recorded real output (lab/recorded/README.md says whose): every
test's result per GPU, and the failures named with what DCGM said."""

from __future__ import annotations

from pathlib import Path

import pytest

from inventory.gpu_diag import GpuDiagError, failures, parse_dcgmi

RECORDED = Path(__file__).resolve().parents[2] / "lab" / "recorded"


def recorded(name: str) -> str:
    return (RECORDED / name).read_text()


def test_a_dcgm3_level_1_run_that_passed() -> None:
    results = parse_dcgmi(recorded("dcgmi-diag-r1-dcgm3.1-pass.json"))
    assert [r.test for r in results][:2] == ["Denylist", "NVML Library"]
    assert {r.status for r in results} == {"pass"} and len(results) == 9
    assert {r.gpu for r in results} == {None}  # Deployment tests are the node's
    assert failures(results) == []


def test_a_dcgm3_level_3_run_with_a_skipped_test_has_no_failure() -> None:
    results = parse_dcgmi(recorded("dcgmi-diag-r3-dcgm3.1-pass-skip.json"))
    assert [(r.test, r.gpu) for r in results if r.status == "skip"] == [("EUD Test", "0")]
    assert {"Targeted Stress", "Memory Bandwidth", "PCIe"} <= {r.test for r in results}
    assert failures(results) == []


def test_a_dcgm4_result_per_gpu_entity() -> None:
    results = parse_dcgmi(recorded("dcgmi-diag-r4-dcgm4-test-object.json"))
    assert [(r.test, r.gpu, r.status) for r in results] == [
        ("diagnostic", str(gpu), "pass") for gpu in range(8)
    ]


def test_failed_gpus_are_named_with_what_dcgm_said() -> None:
    results = parse_dcgmi(recorded("nvvs-per-gpu-fail.json"))
    assert failures(results) == [
        f"sm_stress on GPU {gpu} failed: Max stress level of {level} did not exceed desired"
        f" stress level of 3000.0 for GPU {gpu}"
        for gpu, level in (("0", "2128.7"), ("2", "1096.5"), ("3", "1099.7"))
    ]
    assert len([r for r in results if r.status == "skip"]) == 17


def test_text_before_the_document_is_skipped() -> None:
    text = "Successfully ran diagnostic for group.\n" + recorded("dcgmi-diag-r1-dcgm3.1-pass.json")
    assert len(parse_dcgmi(text)) == 9


@pytest.mark.parametrize(
    ("output", "says"),
    [
        ("Error: unable to establish a connection to the host engine", "no diagnostic"),
        ('{"DCGM GPU Diagnostic": {"test_categories": []}}', "no test results"),
        ('{"DCGM Diagnostic": {"version": "4.2.3", "runtime_error": "no GPUs"}}', "no GPUs"),
        ('{"DCGM GPU Diagnostic": ', "not JSON"),
    ],
)
def test_output_that_is_no_verdict_is_an_error(output: str, says: str) -> None:
    with pytest.raises(GpuDiagError, match=says):
        parse_dcgmi(output)
