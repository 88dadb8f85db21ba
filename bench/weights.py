"""How hard each Regularizer term pulls at weight 1: the norm of the parameters' gradient of the term,
against the cross-entropy's, on scikit-learn's digits (an MLP 64-128-64-10 with ReLU at initialisation,
256 rows per seed). The terms' scales differ by measure (HSIC of RBF kernels lies in [0, 1), MI in nats
grows to ln N), so a weight does not carry over from the KDE to HSIC: docs/regularizer.md, `weight`.
"""
import warnings

import torch
from torch import nn

import fastmi
from bench import save_json

TERMS = [("kde", "successive"), ("kde", "input"), ("kde", "labels"),
         ("hsic", "successive"), ("hsic", "input"), ("hsic", "labels")]


def gradient_norm(model, loss):
    model.zero_grad()
    loss.backward()
    return float(torch.sqrt(sum(p.grad.square().sum() for p in model.parameters())))


def one_seed(x, y, seed):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10))
    rows = torch.randperm(len(x))[:256]
    cross_entropy = gradient_norm(model, nn.functional.cross_entropy(model(x[rows]), y[rows]))
    rows_of = []
    for estimator, pairs in TERMS:
        with fastmi.Regularizer(model, estimator=estimator, pairs=pairs) as reg:
            model(x[rows])
            term = reg(labels=y[rows]) if pairs == "labels" else reg()
            rows_of.append(dict(seed=seed, estimator=estimator, pairs=pairs, values=reg.last,
                                gradient_norm=gradient_norm(model, term), cross_entropy_norm=cross_entropy))
    return rows_of


def run(seeds=3):
    from sklearn.datasets import load_digits
    data, target = load_digits(return_X_y=True)
    x, y = torch.tensor(data / 16.0, dtype=torch.float32), torch.tensor(target)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # ReLU ties, saturation: not what is measured here
        rows = [row for seed in range(seeds) for row in one_seed(x, y, seed)]
    print(f"{'estimator':<9} {'pairs':<11} {'term values':<22} {'gradient norm':<15} vs cross-entropy")
    for estimator, pairs in TERMS:
        mine = [r for r in rows if (r["estimator"], r["pairs"]) == (estimator, pairs)]
        values = [v for r in mine for v in r["values"]]
        norms = [r["gradient_norm"] for r in mine]
        ratio = sum(r["gradient_norm"] / r["cross_entropy_norm"] for r in mine) / len(mine)
        print(f"{estimator:<9} {pairs:<11} {min(values):.4g}-{max(values):<14.4g} {min(norms):.3g}-{max(norms):<10.3g} "
              f"{ratio:.2g}x")
    save_json("weights.json", dict(terms=rows))
    return rows
