"""One-feature linear SVMs for SAP, vectorised over every (latent, factor, class) problem.

disentanglement_lib's SAP fits `sklearn.svm.LinearSVC(C=0.01, class_weight="balanced")` on each
single latent for each factor: D * K separate liblinear calls. Those calls solve, per class
(one-vs-rest; one problem for a binary factor), the primal L2-regularised squared-hinge
problem over w = (weight, bias) with the bias as a regularised feature of value 1:

    f(w) = 1/2 |w|^2 + sum_i C_i max(0, 1 - y_i (w0 x_i + w1))^2,

C_i = C * balanced class weight for the positive class, C (C * weight of class 0 for a binary
factor) for the rest, by liblinear's trust-region Newton method (TRON, Lin & More 1999;
sklearn/svm/src/liblinear/tron.cpp) stopped at |grad| <= tol * max(min(pos, neg), 1) / N * |grad_0|.

The stopped iterate is not the exact minimiser (|dw| ~ 1e-5 here), and that shift moves
test predictions. So this module replays the same TRON iterations (same trust-region and
conjugate-gradient rules, same constants) for all problems at once. With one feature the
active set {i: y_i (w0 x_i + w1) < 1} is a prefix or suffix of the points sorted by x, found
by binary search with liblinear's exact comparison; the sums TRON needs (function, gradient,
the 2 x 2 generalised Hessian) come from prefix sums. Only summation order differs from
liblinear (relative 1e-15), so coefficients agree to ~1e-12 and predictions are identical
unless a test point lies that close to a decision threshold.
"""

from __future__ import annotations

import numpy as np

# Row elements (latents x points per factor) set up at once; more factors run in turns.
_MAX_ROW_ELEMENTS = 5_000_000
# TRON constants (tron.cpp): step acceptance and trust-region update
_ETA0, _ETA1, _ETA2 = 1e-4, 0.25, 0.75
_SIGMA1, _SIGMA2, _SIGMA3 = 0.25, 0.5, 4.0


def _prefix_sums(a: np.ndarray) -> np.ndarray:
    """[R, N] -> [R, N + 1] running sums along rows, starting at 0."""
    out = np.zeros((a.shape[0], a.shape[1] + 1))
    np.cumsum(a, axis=1, out=out[:, 1:])
    return out


def _between(running: np.ndarray, row: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Sum of row[start:end] from the running sums of each row (without a leading zero)."""
    upto_end = np.where(end > 0, running[row, np.maximum(end - 1, 0)], 0.0)
    upto_start = np.where(start > 0, running[row, np.maximum(start - 1, 0)], 0.0)
    return upto_end - upto_start


class _Problems:
    """The sorted data and prefix sums shared by all binary problems."""

    def __init__(self, x: np.ndarray, labels: np.ndarray, sizes: np.ndarray, c: float, tol: float):
        n, num_latents = x.shape
        num_factors = labels.shape[1]
        self.n = n
        x_t = np.ascontiguousarray(x.T)
        order = np.argsort(x_t, axis=1)
        self.xs = np.take_along_axis(x_t, order, axis=1)  # [D, N] sorted per latent
        self.all1 = _prefix_sums(self.xs)  # [D, N + 1] prefix sums of x and x^2
        self.all2 = _prefix_sums(self.xs * self.xs)

        # Row r = k * D + d holds latent d's points grouped by factor k's class, ascending x inside
        # each class; key = (r * max_classes + class) * (N + 1) + rank is sorted, so one
        # searchsorted counts the points of a class below a rank.
        self.max_classes = int(sizes.max())
        rows = num_factors * num_latents
        counts = [np.bincount(labels[:, k], minlength=sizes[k]) for k in range(num_factors)]
        key_type = np.int32 if rows * self.max_classes * (n + 1) < 2**31 else np.int64
        small = np.int16 if self.max_classes < 2**15 else np.int64
        self.keys = np.empty((num_factors, num_latents, n), dtype=key_type)
        # running sums of x and x^2 along each row; one block, so numpy can back it with huge pages
        self.cls1, self.cls2 = np.empty((2, num_factors, num_latents, n))
        latent_start = (np.arange(num_latents) * n)[:, None]
        for k in range(num_factors):  # one factor at a time: small temporaries are recycled, not page-faulted
            by_class = np.argsort(labels[order, k].astype(small), axis=1, kind="stable")  # ranks grouped by class
            keys = self.keys[k]
            keys[:] = np.repeat(np.arange(sizes[k], dtype=key_type), counts[k])  # the class of each position
            keys += (k * num_latents + np.arange(num_latents, dtype=key_type))[:, None] * self.max_classes
            keys *= n + 1
            keys += by_class
            by_class += latent_start
            np.take(self.xs, by_class, out=self.cls1[k])
            np.square(self.cls1[k], out=self.cls2[k])
            np.cumsum(self.cls1[k], axis=1, out=self.cls1[k])
            np.cumsum(self.cls2[k], axis=1, out=self.cls2[k])
        self.keys = self.keys.ravel()
        self.cls1 = self.cls1.reshape(rows, n)
        self.cls2 = self.cls2.reshape(rows, n)

        # The binary problems: positive class, weights, stopping tolerance.
        weights = [n / (sizes[k] * counts[k].astype(np.float64)) for k in range(num_factors)]  # "balanced"
        starts = [np.concatenate([[0], np.cumsum(counts[k])]) for k in range(num_factors)]
        latent, factor, positive, cp, cn, pos, start = [], [], [], [], [], [], []
        for d in range(num_latents):
            for k in range(num_factors):
                for cls in [1] if sizes[k] == 2 else range(sizes[k]):
                    latent.append(d)
                    factor.append(k)
                    positive.append(cls)
                    cp.append(c * weights[k][cls])
                    cn.append(c * weights[k][0] if sizes[k] == 2 else c)
                    pos.append(counts[k][cls])
                    start.append(starts[k][cls])
        self.latent, self.factor, self.positive = np.array(latent), np.array(factor), np.array(positive)
        self.row = self.factor * num_latents + self.latent
        self.class_start = np.array(start)  # segment of the positive class in its row
        self.cp, self.cn = np.array(cp), np.array(cn)
        pos = np.array(pos)
        self.eps = tol * np.maximum(np.minimum(pos, n - pos), 1) / n  # liblinear's primal_solver_tol

    def _cuts(self, idx: np.ndarray, w0: np.ndarray, w1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per problem, the rank where the positives' and where the negatives' active set begins or ends.

        Active is liblinear's test y (w0 x + w1) < 1, evaluated as it does (negation is exact).
        v = w0 x_(i) + w1 is monotone over ranks, so activity flips once; one stacked binary search
        (positives, then negatives) finds the first rank past the flip.
        """
        num = len(idx)
        up = w0 >= 0
        flip = np.concatenate([up, ~up])  # passed = active XOR flip is false, then true, over ranks
        sign = np.repeat([1.0, -1.0], num)
        a, b = np.tile(w0, 2), np.tile(w1, 2)
        rows = np.tile(self.latent[idx], 2) * self.n
        flat = self.xs.ravel()
        lo, hi = np.zeros(2 * num, dtype=np.int64), np.full(2 * num, self.n, dtype=np.int64)
        for _ in range(int(np.ceil(np.log2(self.n + 1)))):
            mid = (lo + hi) >> 1
            u = (a * flat[rows + np.minimum(mid, self.n - 1)] + b) * sign
            passed = (u < 1) ^ flip
            searching = lo < hi
            lo = np.where(searching & ~passed, mid + 1, lo)
            hi = np.where(searching & passed, mid, hi)
        return lo[:num], lo[num:]

    def _class_prefix(self, idx: np.ndarray, ranks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Count, sum x, sum x^2 of the positive class among the points of rank < ranks[:, j]."""
        row = self.row[idx][:, None]
        base = (row * self.max_classes + self.positive[idx][:, None]) * (self.n + 1)
        end = np.searchsorted(self.keys, base + ranks) - row * self.n  # position in the row
        start = self.class_start[idx][:, None]
        return end - start, _between(self.cls1, row, start, end), _between(self.cls2, row, start, end)

    def sums(self, idx: np.ndarray, w0: np.ndarray, w1: np.ndarray) -> tuple[np.ndarray, ...]:
        """Weighted sums over the active set at w: (n, sum x, sum x^2) for positives and negatives."""
        up = w0 >= 0  # w0 * x + w1 is non-decreasing in x
        # positives are active where w0 x + w1 < 1 (a prefix of ranks if up), negatives where it is > -1
        cut_pos, cut_neg = self._cuts(idx, w0, w1)
        lo_p, hi_p = np.where(up, 0, cut_pos), np.where(up, cut_pos, self.n)
        lo_n, hi_n = np.where(up, cut_neg, 0), np.where(up, self.n, cut_neg)
        cnt, s1, s2 = self._class_prefix(idx, np.stack([lo_p, hi_p, lo_n, hi_n], axis=1))
        latent = self.latent[idx]
        n_p, x_p, xx_p = cnt[:, 1] - cnt[:, 0], s1[:, 1] - s1[:, 0], s2[:, 1] - s2[:, 0]
        n_n = (hi_n - lo_n) - (cnt[:, 3] - cnt[:, 2])
        x_n = (self.all1[latent, hi_n] - self.all1[latent, lo_n]) - (s1[:, 3] - s1[:, 2])
        xx_n = (self.all2[latent, hi_n] - self.all2[latent, lo_n]) - (s2[:, 3] - s2[:, 2])
        return n_p, x_p, xx_p, n_n, x_n, xx_n

    def evaluate(self, idx: np.ndarray, w0: np.ndarray, w1: np.ndarray):
        """f(w), grad f(w) and the generalised Hessian H = I + 2 sum_active C_i [x_i, 1][x_i, 1]^T."""
        n_p, x_p, xx_p, n_n, x_n, xx_n = self.sums(idx, w0, w1)
        cp, cn = self.cp[idx], self.cn[idx]
        a_p, a_n = 1 - w1, 1 + w1  # residuals are a_p - w0 x (positives), a_n + w0 x (negatives)
        f = 0.5 * (w0 * w0 + w1 * w1)
        f = f + cp * (n_p * a_p * a_p - 2 * a_p * w0 * x_p + w0 * w0 * xx_p)
        f = f + cn * (n_n * a_n * a_n + 2 * a_n * w0 * x_n + w0 * w0 * xx_n)
        g0 = w0 + 2 * (cp * (w0 * xx_p - a_p * x_p) + cn * (w0 * xx_n + a_n * x_n))
        g1 = w1 + 2 * (cp * (w0 * x_p - a_p * n_p) + cn * (w0 * x_n + a_n * n_n))
        hess = (1 + 2 * (cp * xx_p + cn * xx_n), 2 * (cp * x_p + cn * x_n), 1 + 2 * (cp * n_p + cn * n_n))
        return f, g0, g1, hess


def _trcg(delta, g0, g1, hess):
    """Truncated conjugate gradient of TRON (tron.cpp `trcg`) on 2-vectors; returns the step s and residual r."""
    h00, h01, h11 = hess
    s0, s1 = np.zeros_like(g0), np.zeros_like(g0)
    r0, r1 = -g0, -g1
    d0, d1 = r0.copy(), r1.copy()
    cgtol = 0.1 * np.hypot(g0, g1)
    rtr = r0 * r0 + r1 * r1
    running = np.ones(len(g0), dtype=bool)
    while True:
        running &= np.hypot(r0, r1) > cgtol
        if not running.any():
            return s0, s1, r0, r1
        hd0, hd1 = h00 * d0 + h01 * d1, h01 * d0 + h11 * d1
        alpha = np.where(running, rtr / np.where(running, d0 * hd0 + d1 * hd1, 1.0), 0.0)
        t0, t1 = s0 + alpha * d0, s1 + alpha * d1
        boundary = running & (np.hypot(t0, t1) > delta)
        # step to the trust-region boundary along d, then stop
        std, sts, dtd = s0 * d0 + s1 * d1, s0 * s0 + s1 * s1, d0 * d0 + d1 * d1
        dsq = delta * delta
        rad = np.sqrt(std * std + dtd * (dsq - sts))
        with np.errstate(divide="ignore", invalid="ignore"):
            beta_b = np.where(std >= 0, (dsq - sts) / (std + rad), (rad - std) / dtd)
        inner = running & ~boundary
        s0 = np.where(boundary, s0 + beta_b * d0, np.where(inner, t0, s0))
        s1 = np.where(boundary, s1 + beta_b * d1, np.where(inner, t1, s1))
        step = np.where(boundary, beta_b, alpha)
        r0 = np.where(running, r0 - step * hd0, r0)
        r1 = np.where(running, r1 - step * hd1, r1)
        rnew = r0 * r0 + r1 * r1
        beta = np.where(inner, rnew / np.where(inner, rtr, 1.0), 0.0)
        d0 = np.where(inner, beta * d0 + r0, d0)
        d1 = np.where(inner, beta * d1 + r1, d1)
        rtr = np.where(inner, rnew, rtr)
        running &= ~boundary


def _tron(problems: _Problems, max_iter: int) -> tuple[np.ndarray, np.ndarray]:
    """TRON (tron.cpp `tron`) for every problem at once; returns (w0, w1) per problem."""
    num = len(problems.cp)
    idx = np.arange(num)
    w0, w1 = np.zeros(num), np.zeros(num)
    f, g0, g1, hess = problems.evaluate(idx, w0, w1)
    delta = np.hypot(g0, g1)
    gnorm1 = delta.copy()
    iteration = np.ones(num, dtype=np.int64)
    running = ~(delta <= problems.eps * gnorm1)
    while running.any():
        i = np.flatnonzero(running)
        h = tuple(part[i] for part in hess)
        s0, s1, r0, r1 = _trcg(delta[i], g0[i], g1[i], h)
        nw0, nw1 = w0[i] + s0, w1[i] + s1
        gs = g0[i] * s0 + g1[i] * s1
        prered = -0.5 * (gs - (s0 * r0 + s1 * r1))
        fnew, ng0, ng1, nhess = problems.evaluate(i, nw0, nw1)
        if not (np.isfinite(fnew).all() and np.isfinite(ng0).all() and np.isfinite(ng1).all()):
            # NaN fails every test below, so without this TRON would never stop
            raise ValueError("SAP's one-latent SVMs overflowed float64 (codes too large or too small for their squared sums)")
        actred = f[i] - fnew
        snorm = np.hypot(s0, s1)
        dl = np.where(iteration[i] == 1, np.minimum(delta[i], snorm), delta[i])
        curv = fnew - f[i] - gs
        with np.errstate(divide="ignore", invalid="ignore"):
            alpha = np.where(curv <= 0, _SIGMA3, np.maximum(_SIGMA1, -0.5 * (gs / curv)))
        dl = np.select(
            [actred < _ETA0 * prered, actred < _ETA1 * prered, actred < _ETA2 * prered],
            [np.minimum(np.maximum(alpha, _SIGMA1) * snorm, _SIGMA2 * dl),
             np.maximum(_SIGMA1 * dl, np.minimum(alpha * snorm, _SIGMA2 * dl)),
             np.maximum(_SIGMA1 * dl, np.minimum(alpha * snorm, _SIGMA3 * dl))],
            np.maximum(dl, np.minimum(alpha * snorm, _SIGMA3 * dl)),
        )
        delta[i] = dl
        accept = actred > _ETA0 * prered
        a = i[accept]
        iteration[a] += 1
        w0[a], w1[a], f[a], g0[a], g1[a] = nw0[accept], nw1[accept], fnew[accept], ng0[accept], ng1[accept]
        for part, new in zip(hess, nhess, strict=True):
            part[a] = new[accept]
        fi = f[i]
        stop = accept & (np.hypot(g0[i], g1[i]) <= problems.eps[i] * gnorm1[i])
        stop |= fi < -1.0e32
        stop |= (np.abs(actred) <= 0) & (prered <= 0)
        stop |= (np.abs(actred) <= 1.0e-12 * np.abs(fi)) & (np.abs(prered) <= 1.0e-12 * np.abs(fi))
        stop |= iteration[i] > max_iter
        running[i[stop]] = False
    return w0, w1


def one_feature_svc_accuracy(x_train: np.ndarray, labels_train: np.ndarray, sizes: np.ndarray, classes: list[np.ndarray],
                             x_test: np.ndarray, factors_test: np.ndarray, c: float = 0.01, tol: float = 1e-4,
                             max_iter: int = 1000) -> np.ndarray:
    """Test accuracy [D, K] of LinearSVC(C=c, class_weight="balanced") fitted on each single latent.

    x_train[N, D] float64; labels_train[N, K] dense class indices with sizes[K] >= 2 classes
    (classes[k] their original values); x_test[M, D]; factors_test[M, K] original values.
    """
    x_t = np.ascontiguousarray(x_test.T)  # [D, M]
    best, score = np.empty_like(x_t), np.empty_like(x_t)
    index, candidate, better = np.empty(x_t.shape, np.int64), np.empty(x_t.shape, np.int64), np.empty(x_t.shape, bool)
    num_latents, num_factors = x_train.shape[1], labels_train.shape[1]
    accuracy = np.empty((num_latents, num_factors))
    step = max(1, _MAX_ROW_ELEMENTS // x_train.size)
    for first in range(0, num_factors, step):
        chunk = np.arange(first, min(first + step, num_factors))
        problems = _Problems(x_train, labels_train[:, chunk], sizes[chunk], c, tol)
        w0, w1 = _tron(problems, max_iter)
        for local, k in enumerate(chunk):
            mine = problems.factor == local
            wk0, wk1 = w0[mine].reshape(num_latents, -1), w1[mine].reshape(num_latents, -1)
            # sklearn's decision_function x w0 + w1, then > 0 (binary) or argmax (one-vs-rest),
            # which keeps the first of tied classes
            np.multiply(x_t, wk0[:, :1], out=best)
            best += wk1[:, :1]
            if sizes[k] == 2:
                np.greater(best, 0, out=better)
                index[...] = better
            else:
                index[...] = 0
                for cls in range(1, sizes[k]):
                    np.multiply(x_t, wk0[:, cls:cls + 1], out=score)
                    score += wk1[:, cls:cls + 1]
                    np.greater(score, best, out=better)
                    # index = cls where better, else unchanged; branch-free as cls exceeds every earlier index
                    np.multiply(better, cls, out=candidate)
                    np.maximum(index, candidate, out=index)
                    np.maximum(best, score, out=best)
            # test classes unseen in training (-1) are never predicted
            position = np.minimum(np.searchsorted(classes[k], factors_test[:, k]), len(classes[k]) - 1)
            truth = np.where(classes[k][position] == factors_test[:, k], position, -1)
            accuracy[:, k] = np.mean(index == truth, axis=1)
    return accuracy
