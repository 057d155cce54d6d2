"""What the streamed query's candidate cap does to label efficiency.

Run:
  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_cap.py --dataset fashion-mnist \\
      --pool-size 20000 --seeds 3 --rounds 8 --init 100 --budget 100 --caps 100,300,1000

RALIF in memory against the same RALIF through :func:`ralif.pools.streaming.streamed_select`
with ``max_candidates`` = each cap (its candidates are then the best ``cap`` by score
instead of the best ``rho N``), plus random. Same seeds, initial sets and evaluated model
as ``ralif bench`` (``ralif.loop.run_rounds``). Prints the AUBC (mean test accuracy over
rounds 1-R, %), the mean difference to uncapped RALIF, and whether the picks of the first
round equal uncapped RALIF's (they must wherever the cap is at least ``rho N``).
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

from ralif import RALIF, Strategy
from ralif._params import L2, Integer, RandomState
from ralif.data import load_dataset
from ralif.head import LinearHead
from ralif.loop import initial_labeled_set, run_rounds
from ralif.pools.streaming import streamed_select


class StreamedRALIF(Strategy):
    """RALIF's default query, streamed with a candidate cap."""

    name = "ralif"  # seeded like RALIF: where the cap does not bind, the same rounds
    needs_model = True
    needs_influence = True
    score_direction = "lower"
    _parameter_constraints = {  # noqa: RUF012
        "max_candidates": Integer(1),
        "l2": L2,
        "random_state": RandomState(),
    }

    def __init__(self, max_candidates: int = 20_000, l2="auto", random_state=None) -> None:
        self.max_candidates = max_candidates
        self.l2 = l2
        self.random_state = random_state

    def default_model(self):
        return LinearHead(l2=self.l2)

    def query(self, model, X, y, pool, budget, rng):
        q = streamed_select(
            X, y, budget, RALIF(l2=self.l2), rng, model=model, max_candidates=self.max_candidates
        )
        return q.picks, q.scores


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--dataset", default="fashion-mnist")
    ap.add_argument("--pool-size", type=int, default=20_000)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--init", type=int, default=100)
    ap.add_argument("--budget", type=int, default=100)
    ap.add_argument("--caps", default="100,300,1000")
    args = ap.parse_args()
    data = load_dataset(args.dataset)
    rng = np.random.default_rng(12345)
    keep = np.sort(rng.choice(len(data.y), min(args.pool_size, len(data.y)), replace=False))
    X, y = data.X[keep], data.y[keep]
    variants = {"random": "random", "ralif (in memory)": RALIF()}
    variants.update({f"streamed, cap {c}": StreamedRALIF(int(c)) for c in args.caps.split(",")})
    print(
        f"{args.dataset}: pool {len(y)}, init {args.init}, budget {args.budget}, "
        f"{args.rounds} rounds, {args.seeds} seeds; uncapped RALIF keeps "
        f"{int(np.ceil(0.1 * (len(y) - args.init)))} candidates in round 1"
    )
    curves, first_picks = {}, {}
    for name, strategy in variants.items():
        runs = []
        for seed in range(args.seeds):
            initial = initial_labeled_set(len(y), args.init, seed)
            results = list(
                run_rounds(
                    X, y, data.X_test, data.y_test, strategy, initial, args.budget, args.rounds,
                    seed=seed,
                )
            )  # fmt: skip
            runs.append([r.accuracy for r in results])
            if seed == 0:
                first_picks[name] = set(np.asarray(results[1].picks).tolist())
        curves[name] = c = np.array(runs) * 100
        line = f"| {name} | {c[:, 1:].mean():.2f} ± {c[:, 1:].mean(axis=1).std():.2f} |"
        base = curves.get("ralif (in memory)")
        if base is not None and name.startswith("streamed"):
            same = first_picks[name] == first_picks["ralif (in memory)"]
            line += f" {(c - base)[:, 1:].mean():+.2f} | {'yes' if same else 'no'} |"
        print(line, flush=True)


if __name__ == "__main__":
    main()
