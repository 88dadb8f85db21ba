"""The paper's experiment (experiments/paper.py) runs and summarises (tiny sizes; no timing asserts)."""
import pytest

from experiments import paper


def test_paper_experiment_runs_and_summarises(tmp_path):
    history = paper.train("teacher", weight=0.1, seed=0, epochs=2, backend="torch")  # the kernels: test_kde
    assert len(history["accuracy"]) == 2 and len(history["mi"][0]) == len(paper.HIDDEN)
    rows = paper.summarise({0.1: [history]}, target=0.0, epochs=2)
    assert rows[0].startswith("| 0.1 | 1.0 ± 0.0 (1/1 reached)")
    paper.plot("teacher", {0.1: [history]}, 0.5).savefig(tmp_path / "paper.png")
    assert (tmp_path / "paper.png").stat().st_size > 1000


def test_confirmation_quick_run_writes_its_analysis(tmp_path):
    """--quick: every arm on both tasks, two seeds, 20 steps; the analysis and the files it writes."""
    from experiments import confirm
    report = confirm.run(out=str(tmp_path), backend="torch", **confirm.QUICK)  # the kernels: test_kde
    for task, r in report.items():
        assert set(r["runs"]) == set(confirm.ARMS) and all(len(runs) == 2 for runs in r["runs"].values())
        assert all(len(a) == 20 // confirm.EVERY for runs in r["runs"].values() for a in runs)
        assert [row["outcome"] for row in r["primary"]] == list(confirm.OUTCOMES)
        assert all(0 <= row["p_holm"] <= 1 and row["p_holm"] >= row["p"] for row in r["primary"])
        assert len(r["exploratory"]) == 2 * (len(confirm.ARMS) - 2)
        assert (tmp_path / f"confirm_{task}.png").stat().st_size > 1000
    assert (tmp_path / "confirm.json").exists()


def test_confirmation_statistics():
    from experiments import confirm
    assert confirm.steps_to_target([0.5, 0.8, 0.9], 0.8, every=5) == 10
    assert confirm.steps_to_target([0.5, 0.6], 0.8, every=5) == 15  # censored: one evaluation past the run
    assert confirm.censored([[0.5, 0.6], [0.9, 0.9]], 0.8, every=5) == 1
    assert confirm.wilcoxon_p([0, 0, 0]) == 1.0
    # 20 differences all negative: the exact two-sided signed-rank p is 2 / 2^20
    assert confirm.wilcoxon_p([-float(k) for k in range(1, 21)]) == pytest.approx(2 / 2 ** 20)
    median, low, high = confirm.bootstrap_median([1.0, 2.0, 3.0, 4.0, 100.0])
    assert median == 3.0 and 1.0 <= low <= median <= high <= 100.0
