"""
Influence against refitting
===========================

:func:`ralif.influence_matrix` predicts, for every (pool item, class), how much the mean
loss on the pool (under the head's pseudo labels) would change if that item were labeled
with that class, without refitting anything. Here the prediction is checked the direct
way for 30 (item, class) pairs: add the item with that label, refit the head to its
optimum, and measure the change of the same loss. Points on the diagonal are exact
predictions.

``rescale_ridge=True`` includes the small shift that comes from the mean over ``n + 1``
items rescaling the ridge; it moves every prediction by the same constant and changes no
ranking. With a larger ``l2`` one added item stays in the linear regime where influence
functions hold (the design notes measured Spearman 0.97 at ``l2`` around 0.01 to 0.1).
"""

# %%
import matplotlib.pyplot as plt
import numpy as np
from scipy.stats import spearmanr
from sklearn.datasets import load_digits

from ralif import LinearHead, influence_matrix

X, y = load_digits(return_X_y=True)
X = X / 16.0
rng = np.random.default_rng(0)
perm = rng.permutation(len(y))
L, U = perm[:200], perm[200:600]  # 200 labeled items, a pool of 400
L2 = 0.1


def pool_loss(head, pseudo):
    """Mean cross-entropy of the head on the pool, under fixed pseudo labels."""
    p = head.predict_proba(X[U])
    return -np.log(p[np.arange(len(U)), np.searchsorted(head.classes_, pseudo)]).mean()


head = LinearHead(l2=L2).fit(X[L], y[L])
pseudo = head.predict(X[U])
base = pool_loss(head, pseudo)
delta = influence_matrix(head, X[L], y[L], X[U], rescale_ridge=True)  # shape (400, 10)

# %%
# Thirty pairs: half labeled with the head's own guess, half with another class.
items = rng.choice(len(U), 30, replace=False)
predicted, refitted, own = [], [], []
for k, i in enumerate(items):
    c = int(np.flatnonzero(head.classes_ == pseudo[i])[0])
    if k % 2:
        c = int(rng.choice(np.delete(np.arange(len(head.classes_)), c)))
    refit = LinearHead(l2=L2).fit(np.vstack([X[L], X[U[i]]]), np.r_[y[L], head.classes_[c]])
    predicted.append(delta[i, c])
    refitted.append(pool_loss(refit, pseudo) - base)
    own.append(k % 2 == 0)
predicted, refitted, own = np.array(predicted), np.array(refitted), np.array(own)
rho = spearmanr(predicted, refitted)[0]
print(f"Spearman correlation of influence and refitting over 30 pairs: {rho:.3f}")

# %%
fig, ax = plt.subplots(figsize=(5, 5))
ax.scatter(refitted[own], predicted[own], label="the head's pseudo label")
ax.scatter(refitted[~own], predicted[~own], marker="s", label="another class")
lims = [min(predicted.min(), refitted.min()), max(predicted.max(), refitted.max())]
ax.plot(lims, lims, color="gray", lw=1, ls="--", label="prediction = refit")
ax.set_xlabel("change of the pool loss after refitting")
ax.set_ylabel("change predicted by influence")
ax.set_title(f"digits, l2 = {L2}: Spearman {rho:.2f}")
ax.legend(fontsize=8)
fig.tight_layout()
plt.show()
