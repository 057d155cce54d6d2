"""
Learning curves on digits: RALIF, random and margin
===================================================

:func:`ralif.loop.run_rounds` simulates labeling with the true labels as the oracle: each
round the strategy picks a batch, the labels are revealed, and the linear head is refitted
and scored on a fixed test set. Every strategy starts from the same initial labeled set per
seed. A small run, three seeds of eight rounds of 20 labels, so that it draws in seconds; the
benchmark (``ralif bench``) runs the same loop at scale, with results in the
:doc:`results </results>` page.
"""

# %%
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from ralif.loop import initial_labeled_set, run_rounds

X, y = load_digits(return_X_y=True)
X = X / 16.0
X_pool, X_test, y_pool, y_test = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)

STRATEGIES = ("ralif", "random", "margin")
SEEDS = (0, 1, 2)
N_INIT, BUDGET, N_ROUNDS = 30, 20, 8

accuracy = {s: np.empty((len(SEEDS), N_ROUNDS + 1)) for s in STRATEGIES}
for k, seed in enumerate(SEEDS):
    initial = initial_labeled_set(len(X_pool), N_INIT, seed, y_pool)
    for s in STRATEGIES:
        rounds = run_rounds(
            X_pool, y_pool, X_test, y_test, s, initial, BUDGET, N_ROUNDS, seed=seed, l2=0.1
        )
        accuracy[s][k] = [r.accuracy for r in rounds]

n_labeled = N_INIT + BUDGET * np.arange(N_ROUNDS + 1)
for s in STRATEGIES:
    print(f"{s:>7}: mean accuracy by round", np.round(accuracy[s].mean(axis=0), 3).tolist())

# %%
fig, ax = plt.subplots(figsize=(6, 4))
for s in STRATEGIES:
    mean, std = accuracy[s].mean(axis=0), accuracy[s].std(axis=0)
    ax.plot(n_labeled, mean, marker="o", label=s)
    ax.fill_between(n_labeled, mean - std, mean + std, alpha=0.2)
ax.set_xlabel("labeled items")
ax.set_ylabel("test accuracy")
ax.set_title(f"digits, mean ± std over {len(SEEDS)} seeds (l2 = 0.1)")
ax.legend()
fig.tight_layout()
plt.show()
