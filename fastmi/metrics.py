"""fastmi.metrics: MI, CKA, HSIC and distance correlation as torchmetrics metrics (`update` per batch,
`compute` over an epoch, `reset`, states in the state dict, synchronised across DDP ranks by torchmetrics).
Needs torchmetrics >= 1.0: `pip install "fastmi[metrics]"`.

Two kinds of accumulation:
- MutualInformation, DistanceCorrelation keep the rows (torchmetrics "cat" states): compute() is
  layer_mi / distance_correlation of every row seen, on every rank of every rank's rows. Memory: the rows
  (N x (Da + Db)), and after the gather every rank holds world x rows. max_rows caps it with a uniform
  sample: each row gets an independent uniform key (a generator seeded by seed and rank) and the max_rows
  rows of smallest key are kept (bottom-k sampling, Cohen & Kaplan 2007): a uniform sample without
  replacement of the rows seen, and of the union of every rank's rows after the gather (the same keys, so
  every rank keeps the same rows) whatever each rank saw.
- CKA, HSIC keep sums (Nguyen, Raghu & Kornblith 2021): the unbiased HSIC (Song et al. 2012) of each
  batch, averaged over batches: an unbiased estimate of the population HSIC, whatever the batch size. One
  kernel throughout: linear, or RBF with a float sigma (a per-batch median bandwidth is a different kernel
  per batch, refused).

forward() updates and returns None: a per-batch value is an O(batch^2) estimate nobody asked for; pass
batch_value=True for torchmetrics' default (the value on the batch alone). DistributedSampler pads the
last batches with duplicate rows so that ranks get equal counts: duplicates put kNN distances at 0 (KSG)
and add self terms to the KDE; compute() uses the rows actually passed to update().
"""
import torch

try:
    from torchmetrics import Metric
except ImportError as error:  # an optional extra
    raise ImportError('fastmi.metrics needs torchmetrics >= 1.0: pip install "fastmi[metrics]"') from error

from .api import layer_mi, make_estimator
from .estimators import ESTIMATORS
from .inputs import check_bool, check_int, choice
from .measures.dependence import CKA_KERNELS, cka_of_mean_hsic, distance_correlation, unbiased_hsic_matrix

DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.int64, torch.int32, torch.uint8,
          torch.bool)
UNSET = 2 ** 62  # a min-reduced layout entry of a rank without rows
KEY_BYTES = 8  # a row's key: one float64, stored as bytes


class _BatchValueOptional(Metric):
    """forward() updates only, unless batch_value=True (module docstring)."""
    full_state_update = False

    def __init__(self, batch_value, **kwargs):
        super().__init__(**kwargs)
        self.batch_value = check_bool(batch_value, "batch_value")

    def forward(self, *args, **kwargs):
        if self.batch_value:
            return super().forward(*args, **kwargs)
        self.update(*args, **kwargs)
        return None


class _Rows(_BatchValueOptional):
    """The rows of a and b seen (capped at max_rows by a uniform sample), kept as bytes so that every rank's
    states have one dtype (uint8) and shape (1-d) whatever it saw, and a layout (dtype, widths) agreed by
    max and min reductions: a rank without rows has neither, and ranks that disagree are an error."""

    def __init__(self, max_rows, seed, batch_value, **kwargs):
        super().__init__(batch_value, **kwargs)
        self.max_rows = None if max_rows is None else check_int(max_rows, "max_rows", 1)
        self.seed = check_int(seed, "seed", 0)
        for name in ("a", "b", "keys"):
            self.add_state(name, default=[], dist_reduce_fx="cat", persistent=True)
        self.add_state("layout_high", default=torch.full((4,), -1), dist_reduce_fx="max", persistent=True)
        self.add_state("layout_low", default=torch.full((4,), UNSET), dist_reduce_fx="min", persistent=True)
        self._generator = None

    def update(self, a, b):
        a, b = torch.as_tensor(a).detach(), torch.as_tensor(b).detach()
        if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[0] or a.dtype not in DTYPES or b.dtype not in DTYPES:
            raise ValueError("update(a, b) takes two 2-d tensors with paired rows (floating, integer or bool), got "
                             f"{tuple(a.shape)} {a.dtype} and {tuple(b.shape)} {b.dtype}")
        layout = torch.tensor([DTYPES.index(a.dtype), DTYPES.index(b.dtype), a.shape[1], b.shape[1]],
                              device=self.layout_high.device)
        if int(self.layout_high[0]) >= 0 and not torch.equal(layout, self.layout_high):
            raise ValueError("every batch must have the first one's dtypes and widths: "
                             f"{self._describe(self.layout_high)} before, {self._describe(layout)} now")
        self.layout_high, self.layout_low = layout.clone(), layout.clone()
        self.a.append(_bytes(a))
        self.b.append(_bytes(b))
        self.keys.append(_bytes(torch.rand(a.shape[0], generator=self._keys_generator(), dtype=torch.float64)))
        held = sum(k.numel() for k in self.keys) // KEY_BYTES
        if self.max_rows is not None and held > 2 * self.max_rows:  # back to the cap: memory stays O(cap)
            self.a, self.b, self.keys = [[_bytes(x)] for x in self._kept(*self._decoded())]

    def rows(self):
        """(a, b): the rows compute() uses (at most max_rows; under DDP every rank's, synchronised as compute()
        synchronises them, the same on every rank)."""
        with self.sync_context(dist_sync_fn=self.dist_sync_fn, should_sync=self.sync_on_compute):
            return self._rows()

    def _rows(self):
        return self._kept(*self._decoded())[:2]

    def _keys_generator(self):
        if self._generator is None:  # the rank is known at the first update, not necessarily at construction
            rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
            self._generator = torch.Generator().manual_seed(self.seed * 1_000_003 + rank)
        return self._generator

    def _decoded(self):
        high, low = self.layout_high.tolist(), self.layout_low.tolist()
        if high[0] < 0:
            raise RuntimeError(f"{type(self).__name__}: no rows (update() was never called on any rank)")
        if high != low:
            raise ValueError(f"{type(self).__name__}: the ranks' batches differ in dtypes or widths: "
                             f"{self._describe(low)} and {self._describe(high)}")
        dtype_a, dtype_b, width_a, width_b = DTYPES[high[0]], DTYPES[high[1]], high[2], high[3]
        a, b, keys = (_cat(state) for state in (self.a, self.b, self.keys))
        return a.view(dtype_a).reshape(-1, width_a), b.view(dtype_b).reshape(-1, width_b), keys.view(torch.float64)

    def _kept(self, a, b, keys):
        if self.max_rows is None or keys.numel() <= self.max_rows:
            return a, b, keys
        smallest = keys.topk(self.max_rows, largest=False, sorted=False).indices.sort().values
        return a[smallest], b[smallest], keys[smallest]

    def _sync_dist(self, *args, **kwargs):
        for name in ("a", "b", "keys"):  # a rank without rows sends empty bytes (torchmetrics would send float32)
            if isinstance(getattr(self, name), list) and not getattr(self, name):
                setattr(self, name, [torch.empty(0, dtype=torch.uint8, device=self.layout_high.device)])
        super()._sync_dist(*args, **kwargs)

    @staticmethod
    def _describe(layout):
        code_a, code_b, width_a, width_b = (int(v) for v in layout)
        names = [str(DTYPES[c]) if 0 <= c < len(DTYPES) else "none" for c in (code_a, code_b)]
        return f"dtypes {names[0]} and {names[1]}, widths {width_a} and {width_b}"


def _bytes(x):
    return x.contiguous().reshape(-1).view(torch.uint8)


def _cat(state):
    return torch.cat(state) if isinstance(state, list) else state


class MutualInformation(_Rows):
    """layer_mi over every row passed to update() (or a uniform sample of max_rows of them), with layer_mi's
    estimator and options; a 0-d float64 tensor, the same on every rank.

        metric = fastmi.metrics.MutualInformation(estimator="ksg", max_rows=20_000)
        for x in loader: metric.update(layer1(x), layer2(x))
        metric.compute(); metric.reset()
    """
    higher_is_better = None

    def __init__(self, estimator="kde", *, max_rows=None, seed=0, units="nats", batch_value=False, backend="auto",
                 **options):
        choice(estimator, "estimator", tuple(ESTIMATORS))
        make_estimator(estimator, options)  # its options checked here, not at the first compute()
        super().__init__(max_rows, seed, batch_value)
        self.estimator, self.units, self.backend, self.options = estimator, units, backend, options

    def compute(self):
        a, b = self._rows()  # synchronised by torchmetrics around compute()
        with torch.no_grad():
            value = layer_mi(a, b, estimator=self.estimator, units=self.units, backend=self.backend, **self.options)
        return torch.as_tensor(value, dtype=torch.float64)


class DistanceCorrelation(_Rows):
    """fastmi.distance_correlation of every row passed to update() (or a uniform sample of max_rows), a 0-d
    float64 tensor, the same on every rank."""
    higher_is_better = None

    def __init__(self, *, max_rows=None, seed=0, batch_value=False, backend="auto"):
        super().__init__(max_rows, seed, batch_value)
        self.backend = backend

    def compute(self):
        a, b = self._rows()  # synchronised by torchmetrics around compute()
        with torch.no_grad():
            return torch.as_tensor(distance_correlation(a, b, backend=self.backend), dtype=torch.float64)


class _MeanHSIC(_BatchValueOptional):
    """The sums of the unbiased HSIC of (a, a), (a, b), (b, b) over batches, and the batch count."""

    def __init__(self, kernel, sigma, batch_value, backend, check_finite):
        super().__init__(batch_value)
        self.kernel = choice(kernel, "kernel", CKA_KERNELS)
        if kernel == "rbf" and not _fixed_bandwidth(sigma):
            raise ValueError(f"{type(self).__name__} averages over batches with one kernel: sigma must be a positive "
                             f"float (or a pair of them) with kernel='rbf', got {sigma!r} (a per-batch rule such "
                             "as 'median' is a different kernel per batch)")
        self.sigma, self.backend, self.check_finite = sigma, backend, check_bool(check_finite, "check_finite")
        self.add_state("hsic_sums", default=torch.zeros(2, 2, dtype=torch.float64), dist_reduce_fx="sum",
                       persistent=True)
        self.add_state("batches", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum", persistent=True)

    @torch.no_grad()
    def update(self, a, b):
        hsics = unbiased_hsic_matrix([a, b], self.kernel, self.sigma, self.backend, self.check_finite)
        self.hsic_sums += hsics.to(self.hsic_sums.device)
        self.batches += 1

    def mean_hsic(self):
        if float(self.batches) == 0:
            raise RuntimeError(f"{type(self).__name__}: no batches (update() was never called on any rank)")
        return self.hsic_sums / self.batches


def _fixed_bandwidth(sigma):
    values = sigma if isinstance(sigma, (tuple, list)) and len(sigma) == 2 else [sigma]
    return all(isinstance(s, (int, float)) and not isinstance(s, bool) and s > 0 for s in values)


class HSIC(_MeanHSIC):
    """The mean over batches of the unbiased HSIC of (a, b) (Song et al. 2012; batches of >= 4 rows), with a
    linear or RBF kernel of fixed sigma; a 0-d float64 tensor."""
    higher_is_better = None

    def __init__(self, *, kernel="rbf", sigma=1.0, batch_value=False, backend="auto", check_finite=True):
        super().__init__(kernel, sigma, batch_value, backend, check_finite)

    def compute(self):
        return self.mean_hsic()[0, 1]


class CKA(_MeanHSIC):
    """Minibatch CKA (Nguyen et al. 2021): HSIC_ab / sqrt(HSIC_aa HSIC_bb) of the batch-averaged unbiased
    HSICs; linear kernel by default (Kornblith et al. 2019's). A 0-d float64 tensor; NaN, with a warning,
    where a side has no variance."""
    higher_is_better = None

    def __init__(self, *, kernel="linear", sigma=1.0, batch_value=False, backend="auto", check_finite=True):
        super().__init__(kernel, sigma, batch_value, backend, check_finite)

    def compute(self):
        return cka_of_mean_hsic(self.mean_hsic(), type(self).__name__)[0, 1]
