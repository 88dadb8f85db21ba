"""The benchmark scripts run and measure what they claim (smoke tests at tiny sizes; no timing asserts)."""
import json
import os
import subprocess
import sys

import pytest
import torch

import fastmi
from bench.baselines import dense_kde_mi

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_dense_baseline_is_the_same_estimate(gen):
    a = torch.randn(300, 6, generator=gen, dtype=torch.float64)
    b = a[:, :3] + 0.5 * torch.randn(300, 3, generator=gen, dtype=torch.float64)
    assert float(dense_kde_mi(a, b)) == pytest.approx(float(fastmi.layer_mi(a, b)), abs=1e-10)


def test_gpu_check_script_runs_on_cpu_quick(tmp_path):
    env = dict(os.environ, TRITON_INTERPRET="1", FASTMI_RESULTS=str(tmp_path))
    proc = subprocess.run([sys.executable, "-m", "bench", "gpu", "--quick"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (path,) = tmp_path.glob("gpu_check_*.json")
    payload = json.loads(path.read_text())
    assert payload["checks"] and all(c["ok"] for c in payload["checks"])
    assert all(t["fastmi_fwd_s"] > 0 and t["dense_fwd_bwd_s"] > 0 for t in payload["timings"])


def test_compare_worker_measures_both_methods():
    from bench.compare import measure
    fast = measure("fastmi", 256, 8, backward=True, device="cpu", reps=1)
    dense = measure("dense", 256, 8, backward=True, device="cpu", reps=1)
    assert fast["value"] == pytest.approx(dense["value"], abs=1e-5)
    assert fast["seconds"] > 0 and dense["peak_mb"] >= 0


def test_paper_experiment_runs_and_summarises():
    from bench import paper
    history = paper.train("teacher", weight=0.1, seed=0, epochs=2)
    assert len(history["accuracy"]) == 2 and len(history["mi"][0]) == len(paper.HIDDEN)
    rows = paper.summarise({0.1: [history]}, target=0.0, epochs=2)
    assert rows[0].startswith("| 0.1 | 1.0 ± 0.0 (1/1 reached)")


def test_overhead_measures_three_timings():
    from torch import nn

    from bench import overhead
    result = overhead.measure(lambda: (nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 10)), (5,), 64),
                              "cpu", rounds=1)
    assert result["forward"] > 0 and result["step_with_regularizer"] > 0 and len(result["mi"]) == 1


def test_estimator_suite_rows_and_ksg_equals_the_tree_baseline(capsys):
    from bench.accuracy import estimators, ground_truth_tasks
    tasks = list(ground_truth_tasks(300))
    assert len(tasks) == 19 and all(t > 0 and a.shape[0] == 300 == b.shape[0] for _, a, b, t in tasks)
    rows = estimators(ns=(300,), backend="torch")  # the interpreter is slow; kernels are tested elsewhere
    assert {r["estimator"] for r in rows} >= {"KDE (default)", "KSG k=3", "KSG, scikit-learn KD-tree"}
    by = {(r["task"], r["estimator"]): r["estimate"] for r in rows}
    for task, *_ in tasks:  # the same algorithm: float32 distances vs the tree's float64
        assert abs(by[(task, "KSG k=3")] - by[(task, "KSG, scikit-learn KD-tree")]) < 2e-3
    assert "mean abs error" in capsys.readouterr().out


def test_student_t_correction_vanishes_for_large_dof():
    from bench.accuracy import _student_t_correction
    assert _student_t_correction(3, 1, 1) == pytest.approx(0.0424114, abs=1e-6)  # Monte Carlo: 0.04255
    assert abs(_student_t_correction(1e6, 2, 2)) < 1e-9


def test_speed_job_json_schema_plot_and_unrunnable_baselines(tmp_path):
    out = tmp_path / "speed.json"
    cmd = [sys.executable, "-m", "bench", "speed", "--sizes", "128,256", "--dim", "8", "--repeats", "2",
           "--methods", "fastmi,dense,numpy", "--json", str(out), "--plot", str(tmp_path)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, TRITON_INTERPRET="0", FASTMI_RESULTS=str(tmp_path)))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    assert [r["n"] for r in rows] == [128, 256] and list(tmp_path.glob("speed_cpu_*.png"))
    for row in rows:
        assert {"n", "d", "backward", "device", "dtype", "results"} <= set(row)
        fast, dense = row["results"]["fastmi"], row["results"]["dense"]
        assert {"seconds", "seconds_min", "seconds_max", "times", "peak_mb", "value", "pairs_per_s",
                "speedup_vs_dense", "memory_ratio_vs_dense"} <= set(fast)
        assert fast["seconds_min"] <= fast["seconds"] <= fast["seconds_max"] and len(fast["times"]) == 2
        assert fast["value"] == pytest.approx(dense["value"], abs=1e-5)
        assert row["results"]["numpy"] == dict(row["results"]["numpy"], error="forward only")
    assert "| numpy | 128 | forward only |" in proc.stdout


def test_baselines_that_cannot_run_are_rows_not_crashes():
    from bench.compare import measure
    assert measure("dense", 100_000, 8, memory_limit_mb=1000)["error"].startswith("skipped: needs ~298")
    assert measure("dense", 512, 8, reps=1, timeout=0.01)["error"] == "timed out after 0 s"
    forward = measure("numpy", 300, 4, backward=False, reps=1)
    assert forward["value"] == pytest.approx(measure("fastmi", 300, 4, backward=False, reps=1)["value"], abs=1e-5)


def test_numpy_and_keops_baselines_are_the_same_estimate(gen):
    from bench import baselines
    a = torch.randn(300, 6, generator=gen)
    b = a[:, :3] + 0.5 * torch.randn(300, 3, generator=gen)
    assert float(baselines.numpy_kde_mi(a, b)) == pytest.approx(float(fastmi.layer_mi(a, b, backend="torch")), abs=1e-5)
    try:
        import pykeops  # noqa: F401  (the optional `keops` extra)
    except ImportError:
        return
    assert float(baselines.keops_kde_mi(a, b)) == pytest.approx(float(fastmi.layer_mi(a, b, backend="torch")), abs=1e-5)


def test_pytest_benchmark_suite_runs():
    cmd = [sys.executable, "-m", "pytest", "bench/", "-q", "--benchmark-disable", "-p", "no:cacheprovider"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, TRITON_INTERPRET="0"))
    assert proc.returncode == 0 and "6 passed" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-2000:]


def test_ksg_job_times_both_and_they_agree(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTMI_RESULTS", str(tmp_path))
    from bench import ksg
    rows = ksg.run(n=600, dims=(1, 3), reps=1)
    assert [r["d"] for r in rows] == [1, 3] and all(r["fastmi_s"] > 0 and r["tree_s"] > 0 for r in rows)
    assert all(abs(r["fastmi_mi"] - r["tree_mi"]) < 1e-3 for r in rows)
    assert json.loads((tmp_path / "ksg_cpu.json").read_text())["rows"] == rows
