"""Right-sizing on synthetic peaks: the stated percentile and headroom, the floors, and no
recommendation from too few samples."""

from __future__ import annotations

import math

from labbatch.client.report.rightsizing import (CPU_HEADROOM, MEMORY_HEADROOM, MEMORY_STEP_MIB, MIN_SAMPLES, OOM_HEADROOM,
                                         PERCENTILE, RULE, percentile, recommend)

LAB = "labs/example.yaml"


def attempt(peak_mib: float, *, used_vcpus: float = 0.5, run_s: float = 100.0, memory_mib: int = 8192,
            vcpus: int = 4, succeeded: bool = True, failure: str | None = None) -> dict:
    return {"peak_memory_mib": peak_mib, "cpu_s": used_vcpus * run_s, "run_s": run_s, "memory_mib": memory_mib,
            "vcpus": vcpus, "succeeded": succeeded, "failure": failure}


def per_vcpu_hour(a: dict, vcpus: int, memory_mib: int) -> float:
    # A stand-in price: $1 per reserved vCPU-hour, memory at 4 GiB per vCPU.
    return a["run_s"] / 3600 * max(vcpus, memory_mib / 4096)


def test_percentile_is_nearest_rank():
    assert percentile(list(range(1, 101)), 95) == 95
    assert percentile([5.0], 95) == 5.0
    assert percentile([1, 2, 3, 4], 50) == 2


def test_skewed_peaks_ask_for_the_95th_percentile_plus_headroom_yet_never_less_than_the_largest_peak():
    # 19 samples at 1000 MiB and one at 3000: the 95th percentile (rank 19 of 20) is 1000, and
    # 1000 + 25 % = 1250 would starve the one that needed 3000.
    skewed = [attempt(1000.0) for _ in range(19)] + [attempt(3000.0)]
    rec = recommend("align", skewed, lab_file=LAB, price=per_vcpu_hour)
    assert rec.memory_mib == math.ceil(3000 / MEMORY_STEP_MIB) * MEMORY_STEP_MIB == 3072
    # Mostly small: 95th percentile wins over the largest.
    mostly = [attempt(900.0 + i) for i in range(40)]
    rec = recommend("align", mostly, lab_file=LAB, price=per_vcpu_hour)
    p95 = sorted(900.0 + i for i in range(40))[math.ceil(0.95 * 40) - 1]
    assert rec.memory_mib == math.ceil(p95 * (1 + MEMORY_HEADROOM) / MEMORY_STEP_MIB) * MEMORY_STEP_MIB == 1280
    # vCPUs: half a vCPU used, +20 %, rounded up.
    assert rec.vcpus == max(1, math.ceil(0.5 * (1 + CPU_HEADROOM))) == 1
    # At $1 per reserved vCPU-hour: 40 attempts of 100 s at 4 vCPUs (8 GiB) against 1 vCPU (1280 MiB).
    assert rec.saving_usd == round(40 * 100 / 3600 * (4 - 1), 6)
    assert rec.lab_change == ("# labs/example.yaml\npipelines:\n  align:\n    vcpus: 1  # was 4\n"
                              "    memory_mib: 1280  # was 8192")


def test_busy_cpus_are_kept():
    busy = [attempt(500.0, used_vcpus=3.6) for _ in range(MIN_SAMPLES)]
    rec = recommend("align", busy, lab_file=LAB)
    assert rec.vcpus == math.ceil(3.6 * (1 + CPU_HEADROOM)) == 5
    assert rec.saving_usd is None  # no price given


def test_too_few_samples_give_no_recommendation_and_say_how_many_are_needed():
    few = [attempt(100.0) for _ in range(MIN_SAMPLES - 1)] + [attempt(100.0, succeeded=False, failure="application")]
    rec = recommend("align", few, lab_file=LAB, price=per_vcpu_hour)
    assert (rec.memory_mib, rec.vcpus, rec.lab_change, rec.saving_usd) == (None, None, None, None)
    assert rec.samples == MIN_SAMPLES - 1
    assert f"at least {MIN_SAMPLES}" in rec.reason


def test_an_out_of_memory_history_raises_the_recommendation_above_the_request_that_failed():
    # Successful runs (after recovery with more memory) peaked at 1500 MiB; one attempt was
    # killed at a 2048 MiB request, so anything at or below 2048 is known to fail sometimes.
    runs = [attempt(1500.0, memory_mib=4096) for _ in range(MIN_SAMPLES)]
    runs.append(attempt(2048.0, memory_mib=2048, succeeded=False, failure="out_of_memory"))
    rec = recommend("align", runs, lab_file=LAB, price=per_vcpu_hour, current_memory_mib=2048, current_vcpus=4)
    assert rec.memory_mib == math.ceil(2048 * (1 + OOM_HEADROOM) / MEMORY_STEP_MIB) * MEMORY_STEP_MIB == 2560
    assert "ran out of memory" in rec.reason
    assert "memory_mib: 2560  # was 2048" in rec.lab_change
    # Without that history the peaks alone would have allowed less.
    rec_without = recommend("align", runs[:-1], lab_file=LAB)
    assert rec_without.memory_mib == math.ceil(1500 * (1 + MEMORY_HEADROOM) / MEMORY_STEP_MIB) * MEMORY_STEP_MIB == 2048


def test_a_request_that_is_already_right_changes_nothing():
    right = [attempt(1000.0, used_vcpus=0.7, memory_mib=1280, vcpus=1) for _ in range(MIN_SAMPLES)]
    rec = recommend("align", right, lab_file=LAB, price=per_vcpu_hour)
    assert (rec.memory_mib, rec.vcpus) == (1280, 1)
    assert rec.lab_change is None and rec.saving_usd == 0


def test_the_rule_states_its_numbers():
    for number in (f"{PERCENTILE}th", f"fewer than {MIN_SAMPLES}", f"{MEMORY_STEP_MIB} MiB"):
        assert number in RULE
