"""max_samples="auto": the number of rows whose terms cost `budget` forward passes, found by timing whole
training steps and then frozen.

A term's backward runs inside the user's loss.backward(), so a timer around the Regularizer's own
functions would miss part of its cost (the sampled rows' gradient scattered into the batch's, autograd's
bookkeeping). What is timed instead is the period between the starts of successive reg() calls — a whole
training step — at steps that compute the terms on n rows and at control steps that skip them (they
return 0: the loss has no term at those steps), and the model's forward from forward hooks on the model.
The terms' cost fits

    cost(n) = c0 + c2 n^2          (seconds; c0 the fixed cost per call, c2 n^2 the pairs of rows)

through the median at each trial n of its period minus the mean of the control periods beside it (a
shared machine's speed drifts between minutes: neighbours drift alike), and n solves
cost(n) = budget * forward. The plan (computing calls, with every=k the k-th calls):

    call 0            n_a, discarded (first-call costs: allocator, kernel compilation)
    calls 1-12        control, n_a, control, n_b, three times (n_a: the cost model's n, n_b = n_a / 2)
    calls 13-16       control, n_1, control, n_1 (n_1: the fit of calls 1-12)
    call 17 on        n of the fit of calls 1-16 (least squares over n_a, n_b, n_1), frozen

so calibration takes 17 computing calls, 8 of them control steps. A moving n would move the loss (the
KDE's ceiling is ln n), hence the freeze; Regularizer.calibrate() starts over, as does a change of the
watched layers' widths. Under torch.compile the model's forward hooks are not timed (a clock read breaks
the graph): the forward is taken as a third of a control step (a backward costs about two forwards).
"""
import math
import statistics
import time

import torch

WARMUP = 1
FIRST_ROUNDS = 3  # (control, n_a, control, n_b) rounds before the first fit
CHECK_ROUNDS = 2  # (control, n_1) rounds before the final fit
CALLS = WARMUP + 4 * FIRST_ROUNDS + 2 * CHECK_ROUNDS  # 17 computing calls; the 18th takes the frozen n
STEP_OVER_FORWARD = 3.0  # a training step without the terms, in forwards, where the forward is not timed


class WallClock:
    """Marks are the readings of `now` (seconds): time.perf_counter, or an injected clock (tests)."""

    def __init__(self, now=time.perf_counter):
        self.now = now

    def mark(self):
        return self.now()

    def seconds(self, start, end):
        return end - start


class EventClock:
    """Marks are CUDA events recorded on the current stream: no host sync when marking; reading the
    seconds between two waits for the later one (done once per fit, not per step)."""

    def mark(self):
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def seconds(self, start, end):
        end.synchronize()
        return start.elapsed_time(end) / 1e3


def clock_for(clock, device):
    """The clock of a Regularizer: the injected callable, CUDA events for CUDA layers, or the wall clock."""
    if clock is not None:
        if not callable(clock):
            raise TypeError(f"clock must be a callable returning seconds (like time.perf_counter), got {clock!r}")
        return WallClock(clock)
    return EventClock() if device.type == "cuda" else WallClock()


def fit(points):
    """(c0, c2) of cost = c0 + c2 n^2 by least squares through [(n, cost)], c2 > 0 (a cost that does not
    grow with n within the noise gets the smallest slope that leaves c0 as measured)."""
    xs, ys = [n * n for n, _ in points], [cost for _, cost in points]
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / spread if spread else 0.0
    slope = max(slope, 1e-15)
    return mean_y - slope * mean_x, slope


class Calibration:
    """The plan of the first computing calls, their step periods and forward times, the fits, and the
    frozen n. `agree(n)` is the n every rank takes (under torch.distributed: the fewest). `rows()` says
    what the current computing call does: an int (the terms on that many rows) or None (a control step);
    `record(...)` is told, at the next reg() call, how long the step took."""

    def __init__(self, first, limit, budget, minimum, clock, agree):
        self.limit, self.budget, self.clock, self.agree = limit, budget, clock, agree
        self.minimum = min(minimum, limit)
        self.n_a = agree(max(self.minimum, min(limit, first)))
        self.n_b = self.n_a // 2 if self.n_a // 2 >= self.minimum else min(limit, 2 * self.n_a)
        self.plan = [self.n_a] * WARMUP + [None, self.n_a, None, self.n_b] * FIRST_ROUNDS
        self.periods, self.forwards = [], []  # (rows or None, start mark, end mark); (start, end) marks
        self.frozen, self.measured_overhead, self.forward_seconds, self.cost = None, None, None, None
        self.open = None  # (rows, start mark) of the computing call whose step is under way
        if self.minimum == limit:  # one choice: nothing to measure
            self.frozen = limit

    @property
    def calibrating(self):
        return self.frozen is None

    def over_budget(self):
        """A warning's text where the frozen n could not keep the budget (its fixed cost, or min_samples
        rows, cost more), else None."""
        if self.measured_overhead is None or self.measured_overhead <= self.budget * 1.05:
            return None
        fixed = self.cost[0] / self.forward_seconds
        needed = math.ceil(self.measured_overhead * 10) / 10
        return (f"max_samples='auto': the terms on {self.frozen} rows (min_samples) cost "
                f"{self.measured_overhead:.2f} forward passes (measured), over budget={self.budget:g} (their fixed "
                f"cost per call alone: {fixed:.2f}); pass budget={needed:g} or more, or a smaller min_samples")

    def rows(self):
        """This computing call's rows (None: a control step)."""
        if self.frozen is not None:
            return self.frozen
        return self.plan[len(self.periods)]

    def start(self, rows, mark):
        """A computing call began at `mark` with `rows` (None: control)."""
        if self.frozen is None:
            self.open = (rows, mark)

    def record(self, mark, forward):
        """At the start of the next reg() call (`mark`): the open step's period; `forward`: the (start, end)
        marks of the forward the step ran before its reg() call, or None where the hooks could not time it."""
        if self.open is None:
            return
        rows, start = self.open
        self.open = None
        self.periods.append((rows, start, mark))
        if forward is not None:
            self.forwards.append(forward)
        if len(self.periods) == len(self.plan):
            self._next_stage()

    def _next_stage(self):
        n = self.agree(self._solve())
        if len(self.plan) == WARMUP + 4 * FIRST_ROUNDS:
            self.plan += [None, n] * CHECK_ROUNDS
        else:
            self.settle(n)

    def _solve(self):
        """n with cost(n) = budget * forward, from the periods so far (the warm-up call left out)."""
        timed = [(rows, self.clock.seconds(start, end)) for rows, start, end in self.periods[WARMUP:]]
        control = statistics.median(seconds for rows, seconds in timed if rows is None)
        costs = {}
        for i, (rows, seconds) in enumerate(timed):
            if rows is not None:  # against the control steps beside it: a machine's drift between minutes cancels
                beside = [s for r, s in timed[max(i - 1, 0):i + 2] if r is None]
                costs.setdefault(rows, []).append(seconds - statistics.fmean(beside))
        points = [(n, statistics.median(c)) for n, c in costs.items()]
        if self.forwards:
            forward = statistics.median(self.clock.seconds(start, end) for start, end in self.forwards)
        else:
            forward = control / STEP_OVER_FORWARD
        c0, c2 = fit(points)
        room = self.budget * forward - c0
        n = self.minimum if room <= c2 * self.minimum ** 2 else min(self.limit, math.isqrt(int(room / c2)))
        self.forward_seconds, self.cost = forward, (c0, c2)
        return n

    def settle(self, n):
        """n frozen as the row count, with its measured overhead."""
        c0, c2 = self.cost
        self.measured_overhead = (c0 + c2 * n * n) / self.forward_seconds if self.forward_seconds > 0 else math.inf
        self.frozen = n
