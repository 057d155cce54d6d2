"""Speed and memory of one RALIF query, and a comparison with the original authors' method.

Run:  OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_query.py [--repeats 5] [--quick]

Every figure is the median of ``--repeats`` runs, measured in this process with
``OMP_NUM_THREADS`` (default 2) BLAS threads and ``torch.set_num_threads`` the same.

Cases (pool of N = 59,000 unlabeled items, float32 features):
  A  d=512, C=10, 1,000 labeled, budget 1,000, l2=0.01       target: <= 1 s
  B  as A with l2="auto" (extra time over A)                 target: <= 2 s extra
  C  d=768, C=100, 1,000 labeled                             target: <= 10 s
  D  as A with 10,000 labeled
Memory: the peak of numpy allocations during query A (tracemalloc), against the size
of the feature array (target: <= 1x).

The authors' estimator: one autograd backward pass per (pool item, class) for the
gradient, and LiSSA (damping 0.01, scale 25, no final division) for H^-1 g, several
repetitions averaged; run on a pool subsample and extrapolated. Rank agreement with
ours, and of both with brute-force refitting, on the same (item, class) pairs.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OMP_NUM_THREADS", "2")

import statistics
import time
import tracemalloc

import numpy as np
from scipy.stats import spearmanr

import ralif
from ralif import LinearHead
from ralif.influence import pool_influence
from ralif.scores import influence_spread, margin
from ralif.selectors import kmeans_pp_select, uncertain_candidate_set

N_POOL = 59_000


def make_features(n_labeled, d, C, seed=0, n_pool=N_POOL):
    """Gaussian class clusters: separable enough to look like encoder features."""
    rng = np.random.default_rng(seed)
    n = n_labeled + n_pool
    centers = (rng.normal(size=(C, d)) * (12.0 / np.sqrt(d))).astype(np.float32)
    y_true = rng.integers(C, size=n)
    X = centers[y_true] + rng.normal(size=(n, d)).astype(np.float32)
    y = np.full(n, -1)
    y[:n_labeled] = y_true[:n_labeled]
    return X, y, y_true


def time_query(X, y, budget, l2, repeats, **params):
    """Median seconds of ``ralif.select`` over ``repeats`` runs, and the runs."""
    return median_time(lambda: ralif.select(X, y, budget, l2=l2, random_state=0, **params), repeats)


def median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), times


def breakdown(X, y, budget, l2, repeats):
    """Median seconds of each stage of query A."""
    lab, pool = np.flatnonzero(y >= 0), np.flatnonzero(y < 0)
    stages = {
        "head fit": [],
        "influence (2 pool passes + solve)": [],
        "score + candidates": [],
        "k-means++": [],
    }
    for _ in range(repeats):
        t0 = time.perf_counter()
        XL = X[lab]
        head = LinearHead(l2=l2).fit(XL, y[lab])
        t1 = time.perf_counter()
        infl = pool_influence(head, XL, y[lab], X, pool)
        t2 = time.perf_counter()
        scores = influence_spread(infl.delta, infl.proba)
        cand = uncertain_candidate_set(scores, margin(infl.proba), 0.1, budget)
        t3 = time.perf_counter()
        kmeans_pp_select(X[pool[cand]], budget, first=0, X_reference=XL, random_state=0)
        t4 = time.perf_counter()
        for k, v in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            stages[k].append(v)
    return {k: statistics.median(v) for k, v in stages.items()}, infl


def peak_memory(X, y, budget, l2):
    tracemalloc.start()
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]
    ralif.select(X, y, budget, l2=l2, random_state=0)
    peak = tracemalloc.get_traced_memory()[1] - before
    tracemalloc.stop()
    return peak


# ---------------------------------------------------------------- authors' method
def authors_influence(head, XL, yL, XU_sub, pseudo_full_grad, n_rep, depth, torch):
    """Per-sample autograd gradients and LiSSA, as in the original implementation."""
    t = torch.float64
    W = torch.tensor(head.coef_, dtype=t, requires_grad=True)
    b = torch.tensor(head.intercept_, dtype=t, requires_grad=True)
    XLt, yLt = torch.tensor(XL, dtype=t), torch.tensor(np.searchsorted(head.classes_, yL))
    l2 = head.l2_
    gW, gb = (torch.tensor(a, dtype=t) for a in pseudo_full_grad)

    def risk(Xb, yb):
        ce = torch.nn.functional.cross_entropy(Xb @ W.T + b, yb)
        return ce + 0.5 * l2 * (W**2).sum()

    damping, scale, batch = 0.01, 25.0, 256
    gen = torch.Generator().manual_seed(0)
    estimates = []
    for _ in range(n_rep):
        hW, hb = gW.clone(), gb.clone()
        for _ in range(depth):
            idx = torch.randint(len(yLt), (batch,), generator=gen)
            loss = risk(XLt[idx], yLt[idx])
            dW, db = torch.autograd.grad(loss, (W, b), create_graph=True)
            HvW, Hvb = torch.autograd.grad((dW * hW).sum() + (db * hb).sum(), (W, b))
            hW = gW + (1 - damping) * hW - HvW / scale
            hb = gb + (1 - damping) * hb - Hvb / scale
        estimates.append((hW.detach(), hb.detach()))
    sW = sum(e[0] for e in estimates) / n_rep
    sb = sum(e[1] for e in estimates) / n_rep
    C = len(head.classes_)
    out = np.empty((len(XU_sub), C))
    XUt = torch.tensor(XU_sub, dtype=t)
    for i in range(len(XU_sub)):
        for c in range(C):
            loss = torch.nn.functional.cross_entropy(XUt[i : i + 1] @ W.T + b, torch.tensor([c]))
            dW, db = torch.autograd.grad(loss, (W, b))
            out[i, c] = -((dW * sW).sum() + (db * sb).sum()).item() / len(yL)
    return out


def compare_with_authors(args, torch):
    """Authors' estimator vs ours on a subsample; both vs refitting on a few pairs."""
    n_labeled, d, C, l2 = 1000, 512, 10, 0.01
    X, y, _ = make_features(n_labeled, d, C, seed=1)
    X = X.astype(np.float64)
    lab, pool = np.flatnonzero(y >= 0), np.flatnonzero(y < 0)
    XL, yL = X[lab], y[lab]
    head = LinearHead(l2=l2).fit(XL, yL)

    t = time.perf_counter()
    infl = pool_influence(head, XL, yL, X, pool)
    ours_full = time.perf_counter() - t

    rng = np.random.default_rng(0)
    sub = rng.choice(len(pool), args.authors_items, replace=False)
    # The pseudo-label target gradient is shared by both methods (one pool pass).
    P = infl.proba.copy()
    top = P.argmax(axis=1)
    P[np.arange(len(top)), top] -= 1
    g = ((P.T @ X[pool]) / len(pool), P.sum(axis=0) / len(pool))

    t = time.perf_counter()
    theirs = authors_influence(
        head, XL, yL, X[pool[sub]], g, args.lissa_repeats, args.lissa_depth, torch
    )
    theirs_sub = time.perf_counter() - t
    per_item = theirs_sub / len(sub)
    ours_sub = infl.delta[sub]
    rho_ours_theirs = spearmanr(ours_sub.ravel(), theirs.ravel())[0]

    # Refit for a few pairs: the independent truth for both.
    pseudo = head.classes_[infl.proba.argmax(axis=1)]

    def target_loss(h):
        p = h.predict_proba(X[pool])
        return -np.log(p[np.arange(len(pool)), np.searchsorted(h.classes_, pseudo)]).mean()

    base = target_loss(head)
    pairs = [(i, rng.integers(C)) for i in rng.choice(len(sub), args.refits, replace=False)]
    actual = []
    for i, c in pairs:
        h = LinearHead(l2=l2).fit(np.vstack([XL, X[pool[sub[i]]]]), np.r_[yL, c])
        actual.append(target_loss(h) - base)
    pred_ours = [ours_sub[i, c] for i, c in pairs]
    pred_theirs = [theirs[i, c] for i, c in pairs]
    return {
        "ours_full_pool_s": ours_full,
        "authors_subsample_s": theirs_sub,
        "authors_items": len(sub),
        "authors_extrapolated_full_pool_s": per_item * len(pool),
        "speed_ratio": per_item * len(pool) / ours_full,
        "spearman_ours_vs_authors": rho_ours_theirs,
        "spearman_ours_vs_refit": spearmanr(pred_ours, actual)[0],
        "spearman_authors_vs_refit": spearmanr(pred_theirs, actual)[0],
        "refits": len(pairs),
    }


def main():
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="cases A and memory only")
    ap.add_argument(
        "--authors-items", type=int, default=100, help="pool items for the authors' method"
    )
    ap.add_argument("--lissa-depth", type=int, default=1000)
    ap.add_argument("--lissa-repeats", type=int, default=3)
    ap.add_argument("--refits", type=int, default=30)
    args = ap.parse_args()

    threads = int(os.environ["OMP_NUM_THREADS"])
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:
        torch = None
    from threadpoolctl import threadpool_info

    blas = ", ".join(
        f"{i['internal_api']} {i.get('architecture', '')} x{i['num_threads']}"
        for i in threadpool_info()
    )
    print(f"threads: OMP_NUM_THREADS={threads}; BLAS: {blas}; median of {args.repeats} runs\n")

    budget = 1000
    X, y, _ = make_features(1000, 512, 10)
    ralif.select(X, y, budget, l2=0.01, random_state=0)  # warm-up
    tA, runs = time_query(X, y, budget, 0.01, args.repeats)
    print(
        f"A  N={N_POOL}, d=512, C=10, n=1000, B=1000, l2=0.01: {tA:.3f} s  (runs {', '.join(f'{r:.3f}' for r in runs)})"
    )
    tE, runs = time_query(X, y, budget, 0.01, args.repeats, strategy="ralif", n_candidates=0.1)
    print(
        f"A' same with score='expected' (the default before the benchmark suite): {tE:.3f} s "
        f"(runs {', '.join(f'{r:.3f}' for r in runs)}; default / expected = {tA / tE:.2f})"
    )
    stages, _ = breakdown(X, y, budget, 0.01, args.repeats)
    for k, v in stages.items():
        print(f"     {k:<36} {v:.3f} s")
    peak = peak_memory(X, y, budget, 0.01)
    print(
        f"   peak extra memory {peak / 2**20:.1f} MiB = {peak / X.nbytes:.2f}x the feature array ({X.nbytes / 2**20:.0f} MiB)"
    )
    if args.quick:
        return

    tB, _ = time_query(X, y, budget, "auto", args.repeats)
    print(f"B  same with l2='auto': {tB:.3f} s  (extra {tB - tA:.3f} s over A)")

    X, y, _ = make_features(10_000, 512, 10)
    tD, _ = time_query(X, y, budget, 0.01, args.repeats)
    print(f"D  as A with 10,000 labeled: {tD:.3f} s")
    stages, _ = breakdown(X, y, budget, 0.01, max(1, args.repeats // 2))
    print("     " + "; ".join(f"{k} {v:.3f} s" for k, v in stages.items()))

    X, y, _ = make_features(1000, 768, 100)
    tC, _ = time_query(X, y, budget, 0.01, max(1, args.repeats // 2))
    print(f"C  d=768, C=100, n=1000: {tC:.3f} s")
    stages, infl = breakdown(X, y, budget, 0.01, 1)
    print(
        "     "
        + "; ".join(f"{k} {v:.3f} s" for k, v in stages.items())
        + f"; CG iterations {infl.solve.n_iter}"
    )

    if torch is None:
        print("\nauthors' method: skipped (torch not installed)")
        return
    print(
        f"\nauthors' method (autograd per item x class, LiSSA depth {args.lissa_depth} x {args.lissa_repeats}, "
        f"damping 0.01, scale 25) on {args.authors_items} pool items; d=512, C=10, n=1000:"
    )
    r = compare_with_authors(args, torch)
    print(f"   ours, whole pool of {N_POOL}: {r['ours_full_pool_s']:.3f} s")
    print(
        f"   authors, {r['authors_items']} items: {r['authors_subsample_s']:.1f} s -> whole pool ~{r['authors_extrapolated_full_pool_s']:.0f} s"
    )
    print(f"   speed ratio: {r['speed_ratio']:.0f}x")
    print(f"   Spearman ours vs authors' estimator: {r['spearman_ours_vs_authors']:.3f}")
    print(
        f"   Spearman vs refitting ({r['refits']} pairs): ours {r['spearman_ours_vs_refit']:.3f}, "
        f"authors' {r['spearman_authors_vs_refit']:.3f}"
    )


if __name__ == "__main__":
    main()
