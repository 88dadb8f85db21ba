"""group=: one rank with bad input gives every rank the same clear error at once (no rank waits for a
collective the other never joins), and tiny shards of a valid global batch are fine (2 gloo processes)."""
import datetime
import os
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import fastmi

TIMEOUT_S = 30  # the group's timeout: far below gloo's default 30 minutes; a hang fails the test


def _layers(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, 4, generator=g, dtype=torch.float64)
    return a, a[:, :2] + 0.5 * torch.randn(n, 2, generator=g, dtype=torch.float64)


def _shard(case, rank):
    """This rank's (a, b) for a case: the rows of a 90-row batch, or bad input on rank 1."""
    a, b = _layers(90)
    sizes = {"one_row": (1, 89), "empty": (90, 0)}.get(case, (45, 45))
    start = sum(sizes[:rank])
    a, b = a[start:start + sizes[rank]].clone(), b[start:start + sizes[rank]].clone()
    if rank == 1 and case == "nan":
        b[3, 1] = float("nan")
    if rank == 1 and case == "mismatch":
        b = b[:-1]
    if rank == 1 and case == "dtype":
        a = a.to(torch.int64)
    return a, b


def _label_term(a, b, group=None):
    """A Regularizer's HSIC label term (pairs="labels"); the labels are -1, not a class id, where b has NaN."""
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3).double()
    labels = torch.where(b[:, 1].isnan(), -1, (b[:, 0] > 0).long() + 2 * (b[:, 1] > 1.0).long())
    with fastmi.Regularizer(model, layers=[model], pairs="labels", estimator="hsic", group=group) as reg:
        model(a)
        return reg(labels=labels).detach()


CALLS = {
    "kde": lambda a, b: fastmi.layer_mi(a, b, group=dist.group.WORLD),
    "chain": lambda a, b: fastmi.chain_mi([a, b, torch.tanh(b)], group=dist.group.WORLD)[1],
    "binned": lambda a, b: fastmi.layer_mi(a, b, estimator="binned", bins=4, group=dist.group.WORLD),
    "unit": lambda a, b: fastmi.unit_mi(a, b, bins=4, reduction="sum", group=dist.group.WORLD),
    "cka": lambda a, b: fastmi.cka(a, b, group=dist.group.WORLD),
    "dcor": lambda a, b: fastmi.distance_correlation(a, b, group=dist.group.WORLD),
    "labels": lambda a, b: fastmi.label_mi(b, (a[:, 0] > 0).long(), group=dist.group.WORLD),
    "label_term": lambda a, b: _label_term(a, b, dist.group.WORLD),
}


def _worker(rank, init_file, out_dir, case, call):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2,
                            timeout=datetime.timedelta(seconds=TIMEOUT_S))
    try:
        a, b = _shard(case, rank)
        start = time.perf_counter()
        try:
            result = dict(value=float(CALLS[call](a, b)))
        except (TypeError, ValueError) as e:
            result = dict(error=f"{type(e).__name__}: {e}")
        result["seconds"] = time.perf_counter() - start
        torch.save(result, os.path.join(out_dir, f"{rank}.pt"))
        dist.barrier()
    finally:
        dist.destroy_process_group()
    # leave without interpreter teardown: gloo's threads can abort a finished process there ("terminate
    # called without an active exception", seen once in CI after every result was saved)
    os._exit(0)


def run(tmp_path, case, call):
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path), case, call), nprocs=2, join=True)
    return [torch.load(tmp_path / f"{r}.pt") for r in range(2)]


@pytest.mark.parametrize("case,call,message", [
    ("nan", "kde", "ValueError: rank 1: b contains NaN or Inf"),
    ("nan", "chain", r"ValueError: rank 1: activations\[1\] contains NaN or Inf"),
    ("mismatch", "binned", "ValueError: rank 1: a and b must have the same number of samples"),
    ("dtype", "unit", "TypeError: rank 1: a must have a floating dtype"),
    ("nan", "cka", "ValueError: rank 1: b contains NaN or Inf"),
    ("mismatch", "dcor", "ValueError: rank 1: a and b must have the same number of samples"),
    ("nan", "labels", "ValueError: rank 1: a contains NaN or Inf"),
    ("mismatch", "labels", "ValueError: rank 1: a and b must have the same number of samples"),
    ("nan", "label_term", "ValueError: rank 1: labels must be class ids >= 0, got -1"),
    ("mismatch", "label_term", "ValueError: rank 1: labels has 44 rows but the watched layers' batch has 45"),
])
def test_bad_input_on_one_rank_is_the_same_error_on_every_rank_at_once(tmp_path, case, call, message):
    ranks = run(tmp_path, case, call)
    for r in ranks:
        assert r.get("error", "").startswith(message.replace("\\", "")), r
        assert r["seconds"] < TIMEOUT_S / 3
    assert ranks[0]["error"] == ranks[1]["error"]


@pytest.mark.parametrize("call", ["kde", "binned", "unit", "cka", "dcor", "label_term"])
@pytest.mark.parametrize("case", ["one_row", "empty"])
def test_tiny_shards_of_a_valid_global_batch(tmp_path, case, call):
    ranks = run(tmp_path, case, call)
    a, b = _layers(90)
    group = {"kde": lambda: fastmi.layer_mi(a, b), "binned": lambda: fastmi.layer_mi(a, b, estimator="binned", bins=4),
             "unit": lambda: fastmi.unit_mi(a, b, bins=4, reduction="sum"), "cka": lambda: fastmi.cka(a, b),
             "dcor": lambda: fastmi.distance_correlation(a, b), "label_term": lambda: _label_term(a, b)}
    expected = float(group[call]())
    for r in ranks:
        assert r["value"] == pytest.approx(expected, abs=1e-9), r
