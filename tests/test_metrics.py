"""fastmi.metrics (torchmetrics): each metric's compute() against the function it accumulates on the same rows
or batches, reset, the state dict, the uniform cap, forward, bad input, and 2-process DDP (gloo) where the
ranks saw different numbers of rows, one rank none."""
import datetime
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import fastmi
from fastmi import metrics  # torchmetrics: a dev dependency (the metrics extra)

F64 = torch.float64


def batches(count=3, rows=80, dtype=F64, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(count):
        a = torch.randn(rows, 3, generator=g, dtype=F64)
        b = a[:, :2] + 0.7 * torch.randn(rows, 2, generator=g, dtype=F64)
        out.append((a.to(dtype), b.to(dtype)))
    return out


def cat(pairs):
    return torch.cat([a for a, _ in pairs]), torch.cat([b for _, b in pairs])


@pytest.mark.parametrize("estimator,options,dtype", [
    ("kde", {}, F64), ("kde", dict(sigma=0.8), F64), ("ksg", dict(k=4), F64), ("gcmi", {}, F64),
    ("binned", dict(bins=6), F64), ("gcmi", {}, torch.float32), ("kde", dict(backend="torch"), torch.float16)])
def test_mutual_information_is_layer_mi_of_every_row_seen(estimator, options, dtype):
    data = batches(dtype=dtype)
    metric = metrics.MutualInformation(estimator, **options)
    for a, b in data:
        metric.update(a, b)
    assert metric.compute().dtype == F64
    assert float(metric.compute()) == float(fastmi.layer_mi(*cat(data), estimator=estimator, **options))
    metric.reset()
    with pytest.raises(RuntimeError, match="no rows"):
        metric.compute()


def test_units_and_integer_labels_with_auto():
    a, _ = cat(batches())
    labels = (a[:, 0] > 0).long()[:, None] + (a[:, 1] > 0.5).long()[:, None]
    metric = metrics.MutualInformation("auto", units="bits")
    metric.update(a[:120], labels[:120])
    metric.update(a[120:], labels[120:])
    assert float(metric.compute()) == float(fastmi.layer_mi(a, labels, estimator="auto", units="bits"))


def test_the_state_dict_carries_the_rows():
    data = batches()
    metric = metrics.MutualInformation("ksg")
    for a, b in data:
        metric.update(a, b)
    restored = metrics.MutualInformation("ksg")
    restored.load_state_dict(metric.state_dict())
    assert float(restored.compute()) == float(metric.compute())


def test_max_rows_keeps_a_uniform_sample_of_that_many_rows():
    """Bottom-k keys: the kept rows are the max_rows of smallest key, a uniform sample — 20 batches of 50 rows,
    cap 300: each batch's share of the sample is hypergeometric (mean 15, sd ~3.2); the value is layer_mi of
    the kept rows, and memory stays bounded while updating."""
    data = batches(count=20, rows=50, seed=1)
    metric = metrics.DistanceCorrelation(max_rows=300, seed=3)
    for i, (a, b) in enumerate(data):
        metric.update(torch.cat([a, torch.full((50, 1), float(i), dtype=F64)], 1), b)
        assert sum(k.numel() for k in metric.keys) <= (16 * 300 + 50) * 8  # bytes of float64 keys
    kept_a, kept_b = metric.rows()
    assert kept_a.shape == (300, 4) and kept_b.shape == (300, 2)
    counts = torch.bincount(kept_a[:, 3].long(), minlength=20).double()
    chi2 = float(((counts - 15) ** 2 / 15).sum())
    assert chi2 < 45.3  # the 0.999 quantile of chi-square with 19 dof
    assert float(metric.compute()) == float(fastmi.distance_correlation(kept_a, kept_b))
    everything, seen = metrics.DistanceCorrelation(max_rows=300, seed=3), cat(data)
    for a, b in data:  # a cap above the rows seen keeps them all
        everything.update(a, b)
    assert everything.rows()[0].shape[0] == 300
    small = metrics.DistanceCorrelation(max_rows=5000)
    small.update(*seen)
    assert torch.equal(small.rows()[0], seen[0])


def test_distance_correlation_is_the_function_of_every_row_seen():
    data = batches()
    metric = metrics.DistanceCorrelation()
    for a, b in data:
        metric.update(a, b)
    assert float(metric.compute()) == pytest.approx(float(fastmi.distance_correlation(*cat(data))), rel=1e-14)


@pytest.mark.parametrize("kernel,sigma", [("linear", 1.0), ("rbf", 1.3), ("rbf", (1.1, 0.9))])
def test_cka_and_hsic_average_the_unbiased_hsic_over_batches(kernel, sigma):
    """By hand: the unbiased HSIC of each batch (fastmi.hsic with unbiased=True; the linear kernel's from
    MinibatchCKA's matrix), averaged, then CKA = mean_ab / sqrt(mean_aa mean_bb) (Nguyen et al. 2021)."""
    data = batches(count=4, rows=40)
    cka, hsic = metrics.CKA(kernel=kernel, sigma=sigma), metrics.HSIC(kernel=kernel, sigma=sigma)
    reference = fastmi.MinibatchCKA(kernel=kernel, sigma=list(sigma) if isinstance(sigma, tuple) else sigma)
    for a, b in data:
        cka.update(a, b)
        hsic.update(a, b)
        reference.update([a, b])
    assert float(cka.compute()) == pytest.approx(float(reference.value()[0, 1]), rel=1e-12)
    if kernel == "rbf":
        per_batch = [float(fastmi.hsic(a, b, sigma=sigma, unbiased=True)) for a, b in data]
        assert float(hsic.compute()) == pytest.approx(sum(per_batch) / len(per_batch), rel=1e-10)
    cka.reset()
    with pytest.raises(RuntimeError, match="no batches"):
        cka.compute()


def test_forward_updates_without_a_batch_value_unless_asked():
    (a, b), = batches(count=1)
    quiet = metrics.MutualInformation("ksg")
    assert quiet(a, b) is None and float(quiet.compute()) == float(fastmi.layer_mi(a, b, estimator="ksg"))
    loud = metrics.CKA(batch_value=True)
    assert float(loud(a, b)) == pytest.approx(float(fastmi.cka(a, b, kernel="linear", unbiased=True)), rel=1e-12)


@pytest.mark.parametrize("make,match", [
    (lambda: metrics.MutualInformation("nope"), "estimator"),
    (lambda: metrics.MutualInformation("ksg", sigma=1.0), "sigma"),
    (lambda: metrics.MutualInformation(max_rows=0), "max_rows"),
    (lambda: metrics.CKA(kernel="rbf", sigma="median"), "one kernel"),
    (lambda: metrics.HSIC(sigma=-1.0), "one kernel"),
    (lambda: metrics.CKA(batch_value="yes"), "batch_value"),
])
def test_bad_options_are_named(make, match):
    with pytest.raises((TypeError, ValueError), match=match):
        make()


def test_batches_that_change_dtype_or_width_are_refused():
    (a, b), = batches(count=1)
    metric = metrics.MutualInformation()
    metric.update(a, b)
    with pytest.raises(ValueError, match="first one's dtypes and widths"):
        metric.update(a[:, :2], b)
    with pytest.raises(ValueError, match="first one's dtypes and widths"):
        metric.update(a.float(), b.float())
    with pytest.raises(ValueError, match="paired rows"):
        metric.update(a, b[:-1])


# ------------------------------------------------------------------------------------------ DDP, 2 processes

ROWS = {0: (60, 50, 40), 1: (30,)}  # rank 1 sees fewer rows than rank 0 (and none in the "idle" case)


CASES = {"mi": lambda: metrics.MutualInformation("ksg"),
         "capped": lambda: metrics.MutualInformation("kde", max_rows=100, seed=7),
         "idle": lambda: metrics.MutualInformation("kde"),
         "cka": lambda: metrics.CKA(kernel="rbf", sigma=1.2)}


def _worker(rank, init_file, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2,
                            timeout=datetime.timedelta(seconds=60))
    try:
        for case, make in CASES.items():
            sizes = () if case == "idle" and rank == 1 else ROWS[rank]
            metric = make()
            for (a, b), size in zip(batches(count=3, rows=60, seed=10 + rank), sizes):
                metric.update(a[:size], b[:size])
            value = float(metric.compute())
            rows = metric.rows() if hasattr(metric, "rows") else None
            torch.save(dict(value=value, rows=rows), os.path.join(out_dir, f"{case}-{rank}.pt"))
        dist.barrier()
    finally:
        dist.destroy_process_group()
    os._exit(0)  # as tests/test_distributed_faults.py: no interpreter teardown under gloo's threads


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory):
    """Every case's {value, rows} per rank, from one 2-process run."""
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(str(out / "init"), str(out)), nprocs=2, join=True)
    return {case: [torch.load(out / f"{case}-{r}.pt") for r in range(2)] for case in CASES}


def _seen(case):
    """Every rank's rows in rank order (torchmetrics' gather), as the workers passed them."""
    pairs = []
    for rank in (0, 1):
        sizes = () if case == "idle" and rank == 1 else ROWS[rank]
        pairs += [(a[:size], b[:size]) for (a, b), size in zip(batches(count=3, rows=60, seed=10 + rank), sizes)]
    return pairs


@pytest.mark.parametrize("case", list(CASES))
def test_ddp_every_rank_gets_the_value_of_the_rows_every_rank_saw(ddp_results, case):
    ranks = ddp_results[case]
    assert ranks[0]["value"] == ranks[1]["value"]
    seen = _seen(case)
    if case == "cka":
        reference = fastmi.MinibatchCKA(kernel="rbf", sigma=1.2)
        for a, b in seen:
            reference.update([a, b])
        assert ranks[0]["value"] == pytest.approx(float(reference.value()[0, 1]), rel=1e-12)
        return
    if case == "capped":  # the same 100 rows on both ranks, drawn from every rank's rows
        kept_a, kept_b = ranks[0]["rows"]
        assert torch.equal(kept_a, ranks[1]["rows"][0]) and kept_a.shape[0] == 100
        all_a = cat(seen)[0]
        assert all(bool((all_a == row).all(1).any()) for row in kept_a)
        from_rank_1 = sum(bool((seen[-1][0] == row).all(1).any()) for row in kept_a)
        assert 0 < from_rank_1 < 40  # rank 1 holds 30 of 180 rows: ~17 expected
        assert ranks[0]["value"] == float(fastmi.layer_mi(kept_a, kept_b))
        return
    estimator = "ksg" if case == "mi" else "kde"
    assert ranks[0]["value"] == float(fastmi.layer_mi(*cat(seen), estimator=estimator))
