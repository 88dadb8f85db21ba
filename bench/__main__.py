"""python -m bench [default|cpu|accuracy|gpu]: fastmi against the naive dense estimator.

  default   small workload (N = 1k..4k, D = 64, forward+backward): table and plot in bench/results/
  cpu       the CPU targets: N = 16384 side by side, N = 100,000 fastmi alone (peak RSS)
  accuracy  bandwidth rules on tasks with closed-form MI (how the default was chosen)
  estimators every estimator (KDE variants, KSG, scikit-learn's tree KSG) on the ground-truth suite
  gpu       compiled kernels vs the float64 reference, then timings (bench/gpu_check.sh runs it)
  paper     the paper's experiment: MLPs trained with and without fastmi.Regularizer (scikit-learn)
  overhead  a training step with and without the Regularizer vs a plain forward pass
  histogram unit_mi and layer-binned MI vs the numpy ways (CPU)
  ksg       KSG kNN MI vs scikit-learn's KD-tree KSG (CPU, N = 20k)
"""
import argparse
import json
import os
import platform

from bench import results_dir


def _device():
    import torch
    return "cuda" if torch.cuda.is_available() else "cpu"


def _save(name, payload):
    path = os.path.join(results_dir(), name)
    with open(path, "w") as f:
        json.dump(payload, f, indent=1)
    print(f"wrote {path}")


def default():
    from bench.compare import plot, side_by_side
    device = _device()
    rows = side_by_side([1024, 2048, 4096], 64, backward=True, device=device)
    tag = f"default_{device}"
    plot(rows, os.path.join(results_dir(), f"{tag}.png"), f"KDE MI, D = 64, forward+backward, {device}")
    _save(f"{tag}.json", dict(machine=platform.node(), rows=rows))


def cpu():
    from bench.compare import measure, side_by_side
    rows = side_by_side([16384], 64, backward=True, device="cpu", reps=1)
    big = measure("fastmi", 100_000, 64, backward=True, device="cpu", reps=1)
    print(f"\nfastmi alone, N = 100,000, D = 64, forward+backward: {big['seconds']:.1f} s, "
          f"peak RSS above inputs {big['peak_mb']:.0f} MB, whole process {big['process_peak_rss_mb']:.0f} MB")
    _save("cpu_targets.json", dict(machine=platform.node(), side_by_side=rows, n100k=big))


def accuracy():
    from bench.accuracy import run
    run()


def estimators():
    from bench.accuracy import estimators as run, plot_estimates
    rows = run()
    plot_estimates(rows, os.path.join(results_dir(), "accuracy_estimators.png"), n=4000)
    _save("accuracy_estimators.json", dict(machine=platform.node(), rows=rows))


def paper():
    from bench.paper import run
    run()


def overhead():
    from bench.overhead import run
    run()


def histogram():
    from bench.histogram import run
    run()


def ksg():
    from bench.ksg import run
    run()


def gpu(quick):
    from bench.gpu import run
    run(quick)


def main():
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    jobs = dict(default=default, cpu=cpu, accuracy=accuracy, paper=paper, overhead=overhead, histogram=histogram,
                ksg=ksg, estimators=estimators)
    parser.add_argument("job", nargs="?", default="default", choices=[*jobs, "gpu"])
    parser.add_argument("--quick", action="store_true", help="gpu: tiny sizes (a smoke test on CPU)")
    args = parser.parse_args()
    if args.job == "gpu":
        gpu(args.quick)
    else:
        jobs[args.job]()


if __name__ == "__main__":
    main()
