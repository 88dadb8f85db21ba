"""What fastmi.Regularizer costs: a training step with and without it, against one forward pass.

overhead = (step with regularizer - step without) / forward pass, the three timed in alternation in
one process (median of the rounds), so machine noise hits them alike. Models: the reference MLP
784 -> 1024 -> 1024 -> 1024 -> 10 (batch 1024) and a small CNN on 3x32x32 inputs (batch 512).
"""
import statistics
import warnings

import torch
from torch import nn

import fastmi
from bench import save_json, timed


def reference_mlp():
    return nn.Sequential(nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(),
                         nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 10)), (784,), 1024


def small_cnn():
    return nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(64 * 8 * 8, 10)), (3, 32, 32), 512


def _clock(fn, device):
    return timed(fn, device=device)[0]


def wide_mlp(width=4096, batch=4096, depth=4):
    """The GPU target: wide and deep enough that kernel launches do not dominate."""
    layers = []
    for _ in range(depth):
        layers += [nn.Linear(width, width), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(width, 10)), (width,), batch


def measure(make, device, rounds=5, max_samples=None, budget=None, terms=None):
    """Medians of forward, step, step + Regularizer (terms: its estimator / pairs options, default the KDE
    between successive layers); pairs="labels" gets the batch's class ids."""
    terms = terms or {}
    model, shape, batch = make()
    model.to(device)
    x = torch.randn(batch, *shape, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    seen = {}

    def step(with_reg):
        opt.zero_grad()
        if not with_reg:
            loss_fn(model(x), y).backward()
        else:  # hooks attached for this step only (attaching them costs microseconds)
            with fastmi.Regularizer(model, weight=0.01, max_samples=max_samples, budget=budget, **terms) as reg:
                (loss_fn(model(x), y) + (reg(labels=y) if terms.get("pairs") == "labels" else reg())).backward()
            seen.update(mi=reg.last, samples=reg.samples, modelled_overhead=reg.modelled_overhead)
        opt.step()
    timings = {"forward": [], "step": [], "step_with_regularizer": []}
    warnings.simplefilter("ignore", RuntimeWarning)  # random wide layers saturate; the cost is the same
    for r in range(rounds + 1):  # round 0 warms up (kernel compilation, allocator)
        for name, fn in (("forward", lambda: model(x)), ("step", lambda: step(False)),
                         ("step_with_regularizer", lambda: step(True))):
            t = _clock(fn, device)
            if r:
                timings[name].append(t)
    med = {k: statistics.median(v) for k, v in timings.items()}
    med["overhead_over_forward"] = (med["step_with_regularizer"] - med["step"]) / med["forward"]
    return dict(med, **seen)


MLP = "MLP 784-1024x3-10, batch 1024"
HSIC_INPUT, HSIC_LABELS = dict(estimator="hsic", pairs="input"), dict(estimator="hsic", pairs="labels")
CASES = [(MLP, reference_mlp, None), (MLP, reference_mlp, 256), (MLP, reference_mlp, "auto"),
         ("small CNN, batch 512", small_cnn, None), ("small CNN, batch 512", small_cnn, 256),
         ("small CNN, batch 512", small_cnn, "auto"),
         (MLP, reference_mlp, "auto", dict(estimator="hsic")), (MLP, reference_mlp, "auto", HSIC_INPUT),
         (MLP, reference_mlp, "auto", HSIC_LABELS)]
GPU_CASES = [("MLP 4096x4, batch 4096", wide_mlp, 1024),
             ("MLP 4096x4, batch 4096", wide_mlp, 1024, dict(estimator="hsic"))]


def run(rounds=5, cases=None):
    device = "cuda" if torch.cuda.is_available() else "cpu"
    cases = cases or CASES + (GPU_CASES if device == "cuda" else [])
    rows = []
    print(f"device {device}; medians of {rounds} alternating rounds; 'auto' asks for a budget of 1 forward pass")
    print("| model | terms | max_samples | rows | forward s | step s | step + regularizer s | overhead / forward | "
          "cost model |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, make, max_samples, *terms in cases:
        terms = terms[0] if terms else {}
        m = measure(make, device, rounds, max_samples, budget=1.0 if max_samples == "auto" else None, terms=terms)
        label = " ".join(f"{v}" for v in terms.values()) or "kde successive"
        rows.append(dict(model=name, terms=label, max_samples=max_samples, **m))
        print(f"| {name} | {label} | {max_samples or 'all'} | {m['samples']} | {m['forward']:.4f} | {m['step']:.4f} | "
              f"{m['step_with_regularizer']:.4f} | {m['overhead_over_forward']:.2f}x | {m['modelled_overhead']:.2f}x |")
    save_json(f"overhead_{device}.json", dict(device=device, rows=rows))
    return rows
