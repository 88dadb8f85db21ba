"""The paper's experiment (Hodas & Stinis 2018): does enforcing MI between successive layers speed training?

The same MLP is trained with and without fastmi.Regularizer (-weight * sum_k I(h_k; h_k+1)), several
seeds each, identical everything else (data split, initialisation, batch order per seed). Per epoch
we record test accuracy and the MI of every pair of successive layers on a fixed probe batch.

Tasks (no download): scikit-learn's bundled 8x8 digits, and a synthetic teacher task (labels from
a random tanh teacher network on 20-d Gaussian inputs).

    python -m experiments.paper [--out DIR]     (default DIR: experiments/output/, untracked; the
                                                 committed results are in experiments/results/)
"""
import argparse
import json
import math
import os

import torch
from torch import nn

import fastmi
from fastmi.monitor import new_figure

DEFAULT_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "output")

HIDDEN = (64, 64, 64, 64)


def digits():
    from sklearn.datasets import load_digits
    d = load_digits()
    x = torch.tensor(d.data, dtype=torch.float32) / 16.0
    return x, torch.tensor(d.target), 10


def teacher(n=3000, d=20, classes=5, seed=123):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    h = torch.tanh(x @ torch.randn(d, 32, generator=g) / math.sqrt(d))
    return x, (h @ torch.randn(32, classes, generator=g)).argmax(1), classes


# task -> (data, target test accuracy: below the unregularised plateau, so reaching it takes a while)
TASKS = {"digits": (digits, 0.93), "teacher": (teacher, 0.78)}


def split(x, y, test_fraction=0.3, seed=0):
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    n_test = int(len(x) * test_fraction)
    test, train = order[:n_test], order[n_test:]
    mean, std = x[train].mean(0), x[train].std(0).clamp_min(1e-6)
    x = (x - mean) / std
    return (x[train], y[train]), (x[test], y[test])


def make_mlp(d_in, classes):
    layers, width = [], d_in
    for h in HIDDEN:
        layers += [nn.Linear(width, h), nn.Tanh()]
        width = h
    return nn.Sequential(*layers, nn.Linear(width, classes))


@torch.no_grad()
def evaluate(model, x, y, probe, backend="auto"):
    model.eval()
    accuracy = float((model(x).argmax(1) == y).float().mean())
    with fastmi.Regularizer(model, backend=backend) as measure:
        model(probe)
        measure()
    model.train()
    return accuracy, measure.last


def train(task, weight, seed, epochs, batch=128, lr=1e-3, backend="auto"):
    data, _ = TASKS[task]
    x, y, classes = data()
    (xtr, ytr), (xte, yte) = split(x, y)
    torch.manual_seed(seed)
    model = make_mlp(x.shape[1], classes)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    order = torch.Generator().manual_seed(seed)
    reg = fastmi.Regularizer(model, weight=weight, backend=backend) if weight > 0 else None
    history = dict(accuracy=[], mi=[])
    for _ in range(epochs):
        for rows in torch.randperm(len(xtr), generator=order).split(batch):
            if len(rows) < 2:
                continue
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(xtr[rows]), ytr[rows])
            if reg is not None:
                loss = loss + reg()
            loss.backward()
            opt.step()
        accuracy, mi = evaluate(model, xte, yte, xte[:512], backend)
        history["accuracy"].append(accuracy)
        history["mi"].append(mi)
    if reg is not None:
        reg.remove()
    return history


def epochs_to(accuracies, target):
    return next((i + 1 for i, a in enumerate(accuracies) if a >= target), None)


def _mean_std(values):
    t = torch.tensor(values, dtype=torch.float64)
    return float(t.mean()), float(t.std()) if len(values) > 1 else 0.0


def summarise(runs, target, epochs):
    """Markdown rows: epochs to target (mean ± std over seeds that reached it), final accuracy."""
    rows = []
    for weight, histories in runs.items():
        reached = [epochs_to(h["accuracy"], target) for h in histories]
        hit = [e for e in reached if e is not None]
        e_mean, e_std = _mean_std(hit) if hit else (math.nan, math.nan)
        f_mean, f_std = _mean_std([h["accuracy"][-1] for h in histories])
        rows.append(f"| {weight:g} | {e_mean:.1f} ± {e_std:.1f} ({len(hit)}/{len(reached)} reached) | "
                    f"{f_mean:.4f} ± {f_std:.4f} |")
    return rows


def plot(task, runs, target):
    """Figure: test accuracy per weight (mean ± std over seeds), and each weight's MI per layer pair."""
    weights = list(runs)
    pairs = len(runs[weights[0]][0]["mi"][0])
    fig = new_figure(figsize=(4.2 * (1 + len(weights)), 3.6))
    axes = fig.subplots(1, 1 + len(weights))
    for weight in weights:
        acc = torch.tensor([h["accuracy"] for h in runs[weight]])
        epochs = torch.arange(1, acc.shape[1] + 1)
        mean, std = acc.mean(0), acc.std(0)
        axes[0].plot(epochs, mean, label=f"weight {weight:g}")
        axes[0].fill_between(epochs, mean - std, mean + std, alpha=0.2)
    axes[0].axhline(target, color="gray", ls=":", lw=1)
    axes[0].set(xlabel="epoch", ylabel="test accuracy", title=f"{task}: accuracy (mean ± std)")
    axes[0].legend()
    for ax, weight in zip(axes[1:], weights):
        mi = torch.tensor([h["mi"] for h in runs[weight]]).mean(0)  # (epochs, pairs)
        for k in range(pairs):
            ax.plot(torch.arange(1, mi.shape[0] + 1), mi[:, k], label=f"I(h{k + 1}; h{k + 2})")
        ax.set(xlabel="epoch", ylabel="MI (nats, KDE)", title=f"{task}: MI, weight {weight:g}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def run(weights=(0.0, 0.003, 0.01, 0.1, 1.0), seeds=5, epochs=40, tasks=tuple(TASKS), out=DEFAULT_OUT):
    os.makedirs(out, exist_ok=True)
    report = {}
    for task in tasks:
        target = TASKS[task][1]
        runs = {w: [train(task, w, seed, epochs) for seed in range(seeds)] for w in weights}
        print(f"\n{task}: {seeds} seeds, {epochs} epochs, target test accuracy {target}")
        print("| weight | epochs to target | final test accuracy |")
        print("|---|---|---|")
        for row in summarise(runs, target, epochs):
            print(row)
        plot(task, runs, target).savefig(os.path.join(out, f"paper_{task}.png"), dpi=90)
        report[task] = dict(target=target, runs={str(w): r for w, r in runs.items()})
    with open(os.path.join(out, "paper.json"), "w") as f:
        json.dump(report, f)
    print(f"wrote {out}/paper.json and paper_<task>.png")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m experiments.paper", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=DEFAULT_OUT, help="folder for paper.json and the plots")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=40)
    args = parser.parse_args()
    run(seeds=args.seeds, epochs=args.epochs, out=args.out)
