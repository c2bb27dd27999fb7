"""CPU threads follow the cores the process was given; the setting and OMP_NUM_THREADS override."""

from __future__ import annotations

import os

import pytest
import torch

from tdmi.service.inference.threads import apply_cpu_threads, cpu_threads


def test_unset_means_the_cores_of_this_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert cpu_threads(None) == len(os.sched_getaffinity(0))


def test_the_setting_then_omp_num_threads_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert cpu_threads(None) == 3
    assert cpu_threads(5) == 5
    monkeypatch.setenv("OMP_NUM_THREADS", "not-a-number")
    assert cpu_threads(None) == len(os.sched_getaffinity(0))


def test_applying_sets_torch_threads() -> None:
    before = torch.get_num_threads()
    try:
        assert apply_cpu_threads(1) == 1
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
