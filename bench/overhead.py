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

MAX_CALIBRATION = 20  # training steps max_samples="auto" may take to freeze its rows (the target)
AUTO_WINDOW = (0.75, 1.25)  # max_samples="auto", budget 1: the step's cost over a forward, the target


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
    """Medians of forward, step, step + Regularizer (terms: its other options — estimator, pairs,
    min_samples —, default the KDE between successive layers); pairs="labels" gets the batch's class ids.
    The Regularizer is built once, as in a training loop; with max_samples="auto" it first trains until its
    calibration froze the rows (`calibration_steps`), and `measured_overhead` is its own estimate beside the
    one timed here."""
    terms = terms or {}
    model, shape, batch = make()
    model.to(device)
    x = torch.randn(batch, *shape, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    reg = fastmi.Regularizer(model, weight=0.01, max_samples=max_samples, budget=budget, **terms)

    def step(with_reg):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        if with_reg:
            loss = loss + (reg(labels=y) if terms.get("pairs") == "labels" else reg())
        loss.backward()
        opt.step()
    warnings.simplefilter("ignore", RuntimeWarning)  # random wide layers saturate; the cost is the same
    calibration_steps = 0
    while max_samples == "auto" and reg.measured_overhead is None and calibration_steps < MAX_CALIBRATION:
        step(True)
        calibration_steps += 1
    timings = {"forward": [], "step": [], "step_with_regularizer": []}
    for r in range(rounds + 1):  # round 0 warms up (kernel compilation, allocator)
        for name, fn in (("forward", lambda: model(x)), ("step", lambda: step(False)),
                         ("step_with_regularizer", lambda: step(True))):
            t = _clock(fn, device)
            if r:
                timings[name].append(t)
    reg.remove()
    med = {k: statistics.median(v) for k, v in timings.items()}
    med["overhead_over_forward"] = (med["step_with_regularizer"] - med["step"]) / med["forward"]
    return dict(med, mi=reg.last, samples=reg.samples, modelled_overhead=reg.modelled_overhead,
                measured_overhead=reg.measured_overhead, calibration_steps=calibration_steps)


MLP, CNN = "MLP 784-1024x3-10, batch 1024", "small CNN, batch 512"
HSIC_INPUT, HSIC_LABELS = dict(estimator="hsic", pairs="input"), dict(estimator="hsic", pairs="labels")
# (model, make, max_samples, the Regularizer's other options)
CASES = [(MLP, reference_mlp, None, {}), (MLP, reference_mlp, 256, {}), (MLP, reference_mlp, "auto", {}),
         (CNN, small_cnn, None, {}), (CNN, small_cnn, 256, {}), (CNN, small_cnn, "auto", {}),
         (CNN, small_cnn, "auto", dict(min_samples=64)),
         (MLP, reference_mlp, "auto", dict(estimator="hsic")), (MLP, reference_mlp, "auto", HSIC_INPUT),
         (MLP, reference_mlp, "auto", HSIC_LABELS)]
GPU_CASES = [("MLP 4096x4, batch 4096", wide_mlp, "auto", {}),
             ("MLP 4096x4, batch 4096", wide_mlp, "auto", dict(estimator="hsic"))]
MLP_256_TARGET = 0.6  # the MLP's terms on 256 rows, in forwards (this CPU)
FLOOR_TARGET = 1.6  # the MLP's full-batch terms over their flop floor (bench/floor.py)


def target(name, max_samples, options, m, floor_seconds):
    """The row's target and whether it is met, in words ('' where the row has none)."""
    ratio = m["overhead_over_forward"]
    if max_samples == "auto" and not options.get("estimator"):
        lo, hi = AUTO_WINDOW
        met = lo <= ratio <= hi and m["calibration_steps"] <= MAX_CALIBRATION
        return f"{lo}-{hi}x after <= {MAX_CALIBRATION} steps: {'met' if met else 'missed'}"
    if name == MLP and max_samples == 256:
        return f"<= {MLP_256_TARGET}x: {'met' if ratio <= MLP_256_TARGET else 'missed'}"
    if name == MLP and max_samples is None and floor_seconds:
        over = (m["step_with_regularizer"] - m["step"]) / floor_seconds
        m["over_floor"] = over
        return f"{over:.2f}x the flop floor, <= {FLOOR_TARGET}x: {'met' if over <= FLOOR_TARGET else 'missed'}"
    return ""


def mlp_floor_seconds(device):
    """The flop floor (bench/floor.py) of the KDE chain on the MLP's full batch, forward and backward."""
    if device != "cpu":
        return None
    from bench import floor
    rates = floor.rates(1024, 1024)
    return sum(floor.floors(1024, [1024, 1024, 1024, 10], rates))


def run(rounds=5, cases=None):
    device = "cuda" if torch.cuda.is_available() else "cpu"
    cases = cases or CASES + (GPU_CASES if device == "cuda" else [])
    floor_seconds = mlp_floor_seconds(device)
    rows = []
    print(f"device {device}; medians of {rounds} alternating rounds; 'auto' asks for a budget of 1 forward pass and "
          "first trains until its calibration froze the rows")
    print("| model | terms | max_samples | rows | forward s | step s | step + regularizer s | overhead / forward | "
          "measured by reg | cost model | target |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, make, max_samples, options in cases:
        m = measure(make, device, rounds, max_samples, budget=1.0 if max_samples == "auto" else None, terms=options)
        label = " ".join(f"{k}={v}" if k == "min_samples" else f"{v}" for k, v in options.items()) or "kde successive"
        verdict = target(name, max_samples, options, m, floor_seconds)
        rows.append(dict(model=name, terms=label, max_samples=max_samples, target=verdict, **m))
        measured = "" if m["measured_overhead"] is None else f"{m['measured_overhead']:.2f}x"
        print(f"| {name} | {label} | {max_samples or 'all'} | {m['samples']} | {m['forward']:.4f} | {m['step']:.4f} | "
              f"{m['step_with_regularizer']:.4f} | {m['overhead_over_forward']:.2f}x | {measured} | "
              f"{m['modelled_overhead']:.2f}x | {verdict} |")
    save_json(f"overhead_{device}.json", dict(device=device, floor_seconds=floor_seconds, rows=rows))
    return rows
