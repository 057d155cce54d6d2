"""
A pool in .npy shards, queried in blocks
========================================

A pool too large for memory is kept as ``.npy`` shards; :func:`ralif.select` given a folder
or a glob of them reads the pool in blocks, never whole (a *streamed* query,
:func:`ralif.pools.sources.stream_reason` says why), and returns the same picks as the
query over the array in memory wherever the candidate cap is not reached (see
:func:`ralif.pools.streaming.streamed_select`).

Here the digits are written as four shards in a temporary folder, queried both ways, and
the two queries' scores for every pool item are drawn against each other.
"""

# %%
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits

import ralif
from ralif.pools.sources import open_pool, stream_reason
from ralif.pools.streaming import streamed_select

X, y_true = load_digits(return_X_y=True)
X = (X / 16.0).astype(np.float32)
rng = np.random.default_rng(0)
y = np.full(len(X), -1)
labeled = rng.choice(len(X), 40, replace=False)
y[labeled] = y_true[labeled]

folder = Path(tempfile.mkdtemp(prefix="ralif-shards-"))
for k, part in enumerate(np.array_split(X, 4)):
    np.save(folder / f"part-{k}.npy", part)
pattern = str(folder / "part-*.npy")
print("streamed because:", stream_reason(pattern))
print("pool:", open_pool(pattern).shape, "in", len(list(folder.glob("*.npy"))), "shards")

# %%
# The same call on the glob and on the array; ``l2=0.1`` fixes the ridge.
streamed = ralif.select(pattern, y, budget=10, l2=0.1, random_state=0)
in_memory = ralif.select(X, y, budget=10, l2=0.1, random_state=0)
print("streamed picks: ", streamed.tolist())
print("in-memory picks:", in_memory.tolist())
print("the same picks:", np.array_equal(streamed, in_memory))

# %%
# :func:`~ralif.pools.streaming.streamed_select` is the call behind it; it also returns
# every pool item's score and the time of each pass. Blocks of 256 rows here.
query = streamed_select(pattern, y, 10, l2=0.1, random_state=0, block_rows=256)
strategy = ralif.RALIF(l2=0.1, random_state=0)
strategy.select(X, y, budget=10)
print({stage: round(s, 4) for stage, s in query.seconds.items()})

fig, ax = plt.subplots(figsize=(5, 5))
ax.scatter(strategy.scores_, query.scores, s=6, alpha=0.5, label="pool items")
picked = np.searchsorted(query.pool_index, query.picks)
ax.scatter(strategy.scores_[picked], query.scores[picked], color="C3", label="picks")
ax.set_xlabel("score, array in memory")
ax.set_ylabel("score, streamed from 4 shards")
ax.set_title("RALIF's score of every pool item, both ways")
ax.legend()
fig.tight_layout()
plt.show()

# %%
# The shards were only for this example.
import shutil  # noqa: E402

shutil.rmtree(folder)
