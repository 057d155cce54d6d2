"""
One query on digits, shown as images
====================================

Thirty digits are labeled; RALIF picks the next ten from the rest. Each pick is drawn as the
8x8 image it is, with its true label, the head's pseudo label and the probability the head
gives it. The picks are items the head is unsure of, spread over the feature space by
k-means++ seeding rather than ten variants of one confusing digit.
"""

# %%
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits

import ralif

digits = load_digits()
X = (digits.data / 16.0).astype(np.float64)  # pixels in [0, 1], one row per digit
y_true = digits.target

rng = np.random.default_rng(0)
y = np.full(len(X), -1)  # -1: not labeled yet
labeled = rng.choice(len(X), 30, replace=False)
y[labeled] = y_true[labeled]

# %%
# ``l2=0.1`` fixes the ridge of the linear head (``"auto"`` would cross-validate it).
strategy = ralif.RALIF(l2=0.1, random_state=0)
picks = strategy.select(X, y, budget=10)
proba = strategy.head_.predict_proba(X[picks])
pseudo = strategy.head_.classes_[proba.argmax(axis=1)]
print("picked items:", picks.tolist())
print("their true labels:", y_true[picks].tolist())

# %%
fig, axes = plt.subplots(1, 10, figsize=(11, 1.9))
for rank, (ax, i) in enumerate(zip(axes, picks, strict=True)):
    ax.imshow(digits.images[i], cmap="gray_r", interpolation="nearest")
    ax.set_title(
        f"#{rank + 1}: {y_true[i]}\nhead: {pseudo[rank]} ({proba[rank].max():.2f})", fontsize=8
    )
    ax.set_axis_off()
fig.suptitle("RALIF's ten picks after 30 labels (true label; head's guess and probability)")
fig.tight_layout()
plt.show()
