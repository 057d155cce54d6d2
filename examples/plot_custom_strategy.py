"""
A strategy of your own
======================

A strategy is a scikit-learn estimator deriving from :class:`ralif.Strategy`. It writes
one method:

* :meth:`~ralif.Strategy.query` receives the model already fitted on the labeled items,
  the features, the labels and the pool (indices into ``X``), and returns its picks and
  one score per pool item. It runs on arrays in memory.
* :meth:`~ralif.Strategy.plan` is written over a pool view
  (:class:`ralif.pools.query.PoolQuery`): it maps a block function over the pool and
  reads the few rows it needs by position. The same code then runs on an array and on a
  pool read in blocks (a folder of shards, Parquet, dask workers).

Either is passed to :func:`ralif.select` as an object; ``ralif bench --strategies
my_module:MyStrategy`` benchmarks it, with nothing in ralif to edit.
"""

# %%
import matplotlib.pyplot as plt
import numpy as np
from sklearn.base import clone
from sklearn.datasets import load_digits

import ralif
from ralif.pools.sources import open_pool
from ralif.scores import margin


class SmallestMargin(ralif.Strategy):
    """The pool items with the smallest gap between the two most probable classes."""

    needs_model = True  # query receives a classifier fitted on the labeled items
    score_direction = "lower"  # a smaller margin is wanted first

    def __init__(self, l2=0.1, random_state=None):
        self.l2 = l2  # the default model is LinearHead(l2=self.l2)
        self.random_state = random_state

    def query(self, model, X, y, pool, budget, rng):
        scores = margin(model.predict_proba(X[pool]))
        return pool[np.argsort(scores, kind="stable")[:budget]], scores


# %%
# A plan: the block function is a module-level function, so that dask workers can run it;
# it returns per-item arrays (joined in pool order) and sums (added over blocks).


def least_confidence_block(block, device, model):
    return {"score": 1.0 - model.predict_proba(block).max(axis=1)}, {}


class LeastConfident(ralif.Strategy):
    """The pool items whose most probable class is least probable."""

    needs_model = True
    score_direction = "higher"

    def __init__(self, l2=0.1, random_state=None):
        self.l2 = l2
        self.random_state = random_state

    def plan(self, query, model):
        scores = query.map(least_confidence_block, model)[0]["score"]
        return query.pool[ralif.top_k(scores, query.budget, largest=True)], scores


# %%
X, y_true = load_digits(return_X_y=True)
X = X / 16.0
rng = np.random.default_rng(0)
y = np.full(len(X), -1)
labeled = rng.choice(len(X), 30, replace=False)
y[labeled] = y_true[labeled]

ours = ralif.select(X, y, 8, strategy=SmallestMargin())
builtin = ralif.select(X, y, 8, strategy="margin", l2=0.1)
print("SmallestMargin:", ours.tolist())
print("ralif's margin:", builtin.tolist(), "- the same:", np.array_equal(ours, builtin))
print("a scikit-learn estimator:", clone(SmallestMargin(l2=0.5)).get_params())

planned = ralif.select(X, y, 8, strategy=LeastConfident())
streamed = ralif.select(open_pool(X), y, 8, strategy=LeastConfident())  # read in blocks
print("LeastConfident in memory:", planned.tolist())
print("LeastConfident streamed: ", streamed.tolist())

# %%
fig, axes = plt.subplots(2, 8, figsize=(10, 3))
for row, (name, picks) in enumerate((("SmallestMargin", ours), ("LeastConfident", planned))):
    for ax, i in zip(axes[row], picks, strict=True):
        ax.imshow(X[i].reshape(8, 8), cmap="gray_r", interpolation="nearest")
        ax.set_title(str(y_true[i]), fontsize=9)
        ax.set_axis_off()
    axes[row, 0].text(-0.5, 0.5, name, transform=axes[row, 0].transAxes, ha="right", va="center")
fig.suptitle("picks of two user strategies after 30 labels (true labels above)")
fig.tight_layout()
plt.show()
