"""Per-item scores (measures): probabilities and influence in, one number per item out."""

from __future__ import annotations

import numpy as np


def kept_classes(proba: np.ndarray, tau: float = 4.0) -> np.ndarray:
    """Mask of the labels kept by the truncation ``K(z)``.

    ``K(z) = {y : p_y(z) > tau / C} U {argmax p(z)}``: the top label is always kept.

    Parameters
    ----------
    proba : ndarray of shape (N, C)
        Class probabilities.
    tau : float, default=4.0
        Truncation level; ``tau / C`` is the probability threshold.

    Returns
    -------
    mask : ndarray of bool, shape (N, C)
        Which labels of each item are kept.

    Examples
    --------
    >>> import numpy as np
    >>> kept_classes(np.array([[0.7, 0.2, 0.1], [0.5, 0.45, 0.05]]), tau=1.2).tolist()
    [[True, False, False], [True, True, False]]
    """
    C = proba.shape[1]
    mask = proba > tau / C
    mask[np.arange(proba.shape[0]), proba.argmax(axis=1)] = True
    return mask


def truncated_expectation(delta: np.ndarray, proba: np.ndarray, tau: float = 4.0) -> np.ndarray:
    """Expected influence over the kept labels, probabilities renormalized over ``K(z)``.

    ``E(z) = sum_{y in K(z)} p~_y(z) Delta(z, y)``. Without truncation the expectation
    would be identically zero for the softmax head (``sum_y p_y (p - e_y) = 0``); the
    truncation is what makes it informative. Negative values are predicted loss drops.

    Parameters
    ----------
    delta : ndarray of shape (N, C)
        Influence of each (item, label) pair, e.g. from :func:`ralif.influence_matrix`.
    proba : ndarray of shape (N, C)
        Class probabilities.
    tau : float, default=4.0
        Truncation level.

    Returns
    -------
    E : ndarray of shape (N,)
        Each item's truncated expectation of its influence (lower: a larger drop).

    Examples
    --------
    >>> import numpy as np
    >>> p = np.array([[0.6, 0.3, 0.1]]); d = np.array([[-1.0, 2.0, 5.0]])
    >>> truncated_expectation(d, p, tau=0.6).round(3).tolist()   # keeps labels 0 and 1
    [0.0]
    """
    w = np.where(kept_classes(proba, tau), proba, 0.0)
    w /= w.sum(axis=1, keepdims=True)
    return (w * delta).sum(axis=1)


def authors_score(
    delta: np.ndarray, proba: np.ndarray, target_loss: float, tau: float = 4.0
) -> np.ndarray:
    """The score of the original RALIF code: mean over ``K(z)`` of ``p_y (L_T + Delta(z, y))``.

    No renormalization; the top label is always kept, so the mean is never empty.
    Since ``L_T`` dominates ``Delta``, the ranking is close to "smallest mean kept
    probability" (an uncertainty measure) with influence as a small correction.
    Lower is better.

    Parameters
    ----------
    delta : ndarray of shape (N, C)
        Influence of each (item, label) pair.
    proba : ndarray of shape (N, C)
        Class probabilities.
    target_loss : float
        Current mean target loss ``L_T``.
    tau : float, default=4.0
        Truncation level.

    Returns
    -------
    score : ndarray of shape (N,)
        Each item's score (lower: picked first).

    Examples
    --------
    >>> import numpy as np
    >>> delta = np.array([[-0.2, 0.1], [0.0, 0.3]]); proba = np.array([[0.9, 0.1], [0.5, 0.5]])
    >>> authors_score(delta, proba, target_loss=1.0, tau=1.0).shape
    (2,)
    """
    mask = kept_classes(proba, tau)
    total = np.where(mask, proba * (target_loss + delta), 0.0).sum(axis=1)
    return total / mask.sum(axis=1)


def influence_spread(delta: np.ndarray, proba: np.ndarray) -> np.ndarray:
    """How far the label of an item is expected to move the target loss, either way.

    ``sqrt(sum_y p_y Delta(z, y)^2)``: the standard deviation of the predicted loss
    change under the head's own label distribution (its mean is zero for a softmax head,
    which is why the plain expectation says nothing). No label is privileged, so it does
    not reward items whose pseudo label merely confirms the model; it is large where the
    head is uncertain *and* the item has leverage on the target. Returned negated, so
    that lower is better like the other influence scores.

    Parameters
    ----------
    delta : ndarray of shape (N, C)
        Influence of each (item, label) pair.
    proba : ndarray of shape (N, C)
        Class probabilities.

    Returns
    -------
    score : ndarray of shape (N,)
        ``-std``; lower = larger expected movement.

    Examples
    --------
    >>> import numpy as np
    >>> p = np.array([[0.5, 0.5], [0.9, 0.1]])
    >>> d = np.array([[1.0, -1.0], [0.1, -0.9]])
    >>> influence_spread(d, p).round(3).tolist()
    [-1.0, -0.3]
    """
    return -np.sqrt(np.maximum((proba * delta**2).sum(axis=1), 0.0))


def entropy(proba: np.ndarray) -> np.ndarray:
    """Predictive entropy ``-sum_y p_y log p_y`` over the last axis (higher = more uncertain).

    Examples
    --------
    >>> import numpy as np
    >>> entropy(np.array([[0.5, 0.5], [1.0, 0.0]])).round(4).tolist()
    [0.6931, 0.0]
    """
    # float64: in float32 the clip floor rounds to 0 and 0 * log(0) gives NaN.
    proba = np.asarray(proba, dtype=np.float64)
    # The sign goes inside the sum, so that a certain prediction scores 0.0, not -0.0.
    return (proba * -np.log(np.clip(proba, 1e-300, 1.0))).sum(axis=-1)


def margin(proba: np.ndarray) -> np.ndarray:
    """Gap between the two largest probabilities (lower = more uncertain).

    Examples
    --------
    >>> import numpy as np
    >>> margin(np.array([[0.5, 0.3, 0.2], [0.4, 0.4, 0.2]])).round(3).tolist()
    [0.2, 0.0]
    """
    top2 = np.partition(proba, proba.shape[1] - 2, axis=1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


def least_confidence(proba: np.ndarray) -> np.ndarray:
    """``1 - max_y p_y`` (higher = more uncertain)."""
    return 1.0 - proba.max(axis=1)


def mutual_information(proba_samples: np.ndarray) -> np.ndarray:
    """BALD's mutual information between the label and the parameters.

    ``I = H[mean_s p_s] - mean_s H[p_s]`` (Houlsby et al., 2011); higher = the
    posterior samples disagree more.

    Parameters
    ----------
    proba_samples : ndarray of shape (S, N, C)
        Probabilities under ``S`` posterior samples.

    Returns
    -------
    mi : ndarray of shape (N,)
    """
    mean_entropy = entropy(proba_samples).mean(axis=0)
    return np.maximum(entropy(proba_samples.mean(axis=0)) - mean_entropy, 0.0)
