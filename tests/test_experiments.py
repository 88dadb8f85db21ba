"""The paper's experiment (experiments/paper.py) runs and summarises (tiny sizes; no timing asserts)."""
from experiments import paper


def test_paper_experiment_runs_and_summarises(tmp_path):
    history = paper.train("teacher", weight=0.1, seed=0, epochs=2, backend="torch")  # the kernels: test_kde
    assert len(history["accuracy"]) == 2 and len(history["mi"][0]) == len(paper.HIDDEN)
    rows = paper.summarise({0.1: [history]}, target=0.0, epochs=2)
    assert rows[0].startswith("| 0.1 | 1.0 ± 0.0 (1/1 reached)")
    paper.plot("teacher", {0.1: [history]}, 0.5).savefig(tmp_path / "paper.png")
    assert (tmp_path / "paper.png").stat().st_size > 1000
