"""python -m bench [job] [options]: fastmi against naive estimators — speed, memory, accuracy.

jobs:
  default     small workload: KDE MI forward+backward, N = 1k..4k, D = 64, fastmi vs every baseline
  speed       the same table at --sizes/--dim/--dtype/--device/--repeats/--methods (time AND memory)
  memory      alias of speed: every measurement records both time and peak memory
  cpu         the CPU targets: N = 16384 side by side and against the GEMM + exp floor (bench/floor.py),
              N = 100,000 fastmi alone (peak RSS)
  accuracy    KDE bandwidth rules on tasks with closed-form MI (how the default was chosen)
  estimators  every estimator (KDE variants, KSG, scikit-learn's tree KSG) on the ground-truth suite
  overhead    a training step with and without the Regularizer vs a plain forward pass
  histogram   unit_mi and layer-binned MI vs the numpy ways (CPU)
  ksg         KSG kNN MI vs scipy's cKDTree and scikit-learn's KD-tree (CPU, N = 2k..1M, d = 1..20 per
              side; fastmi's tree and tile paths), and mi_test's cost against one estimate
  ksg-crossover  fastmi's KSG tree path vs its tiles by joint dimension and N (ksg.TREE_CROSSOVER)
  significance  mi_test: its cost against one estimate (KDE, KSG, GCMI), false-positive rates on
              independent data over 1000 seeds and p on dependent data, per estimator
  dependence  RBF CKA and distance correlation: fastmi vs dense torch, pykeops and the dcor package (CPU,
              N = 1k..16k, time and peak memory), then fastmi's CKA alone at N = 100,000
  heldout     auto's error, and mi_interval's debiased, on the suite and on held-out tasks (bench/heldout.py),
              5 seeds per task at N = 500 and 2000 (offline, ~15 min)
  intervals   mi_interval's coverage of the truth on the suite's tasks (95% intervals, 200 draws per
              task at N = 500 and 2000: offline, hours; --quick: 3 tasks x 20 draws)
  weights     how hard each Regularizer term pulls at weight 1 (gradient norms vs cross-entropy's, digits)
  gpu         timings of the compiled kernels vs the dense baseline (bench/gpu_check.sh runs it)

Baselines of the KDE tables (bench/baselines.py): dense (torch cdist + logsumexp: every ratio is
against it), numpy (scipy, forward only), keops (pykeops LazyTensor, when installed). A baseline that
cannot run (memory, time, not installed) is a row saying why, never a crash. JSON schema: see
bench/compare.py. Output: --out, else $FASTMI_RESULTS, else bench/output/ (untracked; the committed
reference results are in bench/results/: refresh them with --out bench/results). The paper's
training experiment is not a benchmark: python -m experiments.paper.
"""
import argparse
import os

from bench import save_json, save_plot


def _device(name="auto"):
    import torch
    if name != "auto":
        return name
    return "cuda" if torch.cuda.is_available() else "cpu"


def speed(args, sizes=None, tag=None):
    from bench.compare import plot, side_by_side
    device = _device(args.device)
    sizes = sizes or args.sizes
    backward = not args.forward_only
    rows = side_by_side(sizes, args.dim, backward, device, args.repeats, args.methods, args.dtype, args.timeout)
    tag = tag or f"speed_{device}_{args.dtype}_d{args.dim}_{'fwd_bwd' if backward else 'fwd'}"
    save_json(f"{tag}.json", dict(rows=rows))
    save_plot(plot, f"{tag}.png", rows,
              f"KDE MI, D = {args.dim}, {'forward+backward' if backward else 'forward'}, {args.dtype}, {device}")
    return rows


def default(args):
    return speed(args, sizes=[1024, 2048, 4096], tag=f"default_{_device(args.device)}")


def cpu(args):
    from bench import floor
    from bench.compare import measure, side_by_side
    rows = side_by_side([16384], 64, backward=True, device="cpu", reps=2, methods=("fastmi", "dense"))
    model = floor.measure(16384, 64)
    floor.report(model)
    big = measure("fastmi", 100_000, 64, backward=True, device="cpu", reps=1)
    print(f"\nfastmi alone, N = 100,000, D = 64, forward+backward: {big['seconds']:.1f} s, "
          f"peak RSS above inputs {big['peak_mb']:.0f} MB, whole process {big['process_peak_rss_mb']:.0f} MB")
    save_json("cpu_targets.json", dict(side_by_side=rows, floor=model, n100k=big))


def accuracy(args):
    from bench.accuracy import run
    run()


def estimators(args):
    from bench.accuracy import estimators as run
    from bench.accuracy import plot_estimates
    rows = run()
    save_json("accuracy_estimators.json", dict(rows=rows))
    save_plot(plot_estimates, "accuracy_estimators.png", rows, 2000)


def overhead(args):
    from bench.overhead import run
    run()


def intervals(args):
    from bench.intervals import SMOKE_TASKS, run
    rows = run(tasks=SMOKE_TASKS, count=20) if args.quick else run()
    save_json("intervals.json", dict(rows=rows))


def heldout(args):
    from bench.heldout import run
    save_json("heldout.json", dict(rows=run()))


def histogram(args):
    from bench.histogram import run
    run()


def ksg(args):
    from bench.ksg import run
    run()


def ksg_crossover(args):
    from bench.ksg import crossover
    crossover()


def significance(args):
    from bench.significance import run
    run()


def dependence(args):
    from bench.dependence import run
    run()


def weights(args):
    from bench.weights import run
    run()


def gpu(args):
    import torch  # (torch does not import triton)
    if args.quick and not torch.cuda.is_available():
        os.environ["TRITON_INTERPRET"] = "1"  # the smoke test on a CPU: the kernels' code in the interpreter,
        # which must be chosen before fastmi imports triton
    from bench.gpu import run
    run(args.quick)


JOBS = {"default": default, "speed": speed, "memory": speed, "cpu": cpu, "accuracy": accuracy,
        "estimators": estimators, "overhead": overhead, "intervals": intervals, "heldout": heldout,
        "histogram": histogram, "ksg": ksg,
        "ksg-crossover": ksg_crossover, "significance": significance, "dependence": dependence,
        "weights": weights, "gpu": gpu}


def _positive(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _ints(text):
    return [_positive(v) for v in text.split(",")]


def _methods(text):
    from bench.compare import METHODS
    chosen = tuple(text.split(","))
    unknown = [m for m in chosen if m not in METHODS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown methods {unknown}; choose from {list(METHODS)}")
    return chosen


def parser():
    from bench.compare import METHODS
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("job", nargs="?", default="default", choices=list(JOBS))
    p.add_argument("--sizes", type=_ints, default=[1024, 2048, 4096, 8192], help="speed: N values, e.g. 1024,4096")
    p.add_argument("--dim", type=_positive, default=64, help="speed: D of each input")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64", "float16", "bfloat16"])
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--repeats", type=_positive, default=3, help="timed runs per measurement (median reported)")
    p.add_argument("--methods", type=_methods, default=METHODS, help=f"comma-separated subset of {list(METHODS)}")
    p.add_argument("--forward-only", action="store_true", help="speed: time the forward pass only")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds before a measurement is reported as timed out")
    p.add_argument("--out", help="folder for the job's JSON and plots (default: $FASTMI_RESULTS, else bench/output/)")
    p.add_argument("--quick", action="store_true",
                   help="gpu: tiny sizes (a smoke test on CPU); intervals: 3 tasks x 20 draws")
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    if args.out:
        os.environ["FASTMI_RESULTS"] = args.out
    JOBS[args.job](args)


if __name__ == "__main__":
    main()
