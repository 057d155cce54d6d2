"""What strategies need from a model, and the models that can give exact influence.

Uncertainty and diversity strategies need a :class:`Classifier`: ``fit(X, y)``
returning itself, ``predict_proba(X)`` with columns ordered as ``classes_``. Any
scikit-learn classifier qualifies, and so does a small wrapper around a network.

Influence-based strategies (RALIF, ISAL, BALD's Laplace posterior) need more: the last
layer's features and the curvature of the training objective at its exact optimum.
:class:`~ralif.LinearHead` has both (its features are the ``X`` it was fitted on, for
example a frozen or per-round encoder's embeddings); a fitted scikit-learn
``LogisticRegression`` is converted to one (:meth:`LinearHead.from_sklearn`). Anything
else is refused by :func:`influence_head` rather than approximated silently.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from ralif._validation import RalifInputError

if TYPE_CHECKING:
    from ralif.head import LinearHead


@runtime_checkable
class Classifier(Protocol):
    """A probabilistic classifier: all a non-influence strategy asks of its model."""

    def fit(self, X: np.ndarray, y: np.ndarray) -> Classifier: ...

    def predict_proba(self, X: np.ndarray) -> np.ndarray: ...


def is_fitted(model: object) -> bool:
    """Whether ``model`` has been fitted (scikit-learn's convention: ``classes_`` set)."""
    return hasattr(model, "classes_")


def check_fitted_on(model: Any, X_labeled: np.ndarray, y_labeled: np.ndarray) -> None:
    """Refuse a fitted model whose classes or width cannot be those of the labeled items."""
    classes = np.asarray(model.classes_)
    want = np.unique(y_labeled)
    if not np.array_equal(classes, want):
        raise RalifInputError(
            f"the model was fitted on classes {classes.tolist()} but the labeled items have "
            f"{want.tolist()}; fit it on the labeled items, or pass it unfitted"
        )
    width = getattr(model, "n_features_in_", X_labeled.shape[1])
    if width != X_labeled.shape[1]:
        raise RalifInputError(
            f"the model was fitted on {width} features but X has {X_labeled.shape[1]}"
        )


def check_influence_model(model: object) -> None:
    """Refuse, before any fitting, a model that cannot give exact influence."""
    from sklearn.linear_model import LogisticRegression

    from ralif.head import LinearHead

    if not isinstance(model, (LinearHead, LogisticRegression)):
        raise RalifInputError(
            "influence needs a model with known curvature at its optimum: a ralif LinearHead "
            f"or a scikit-learn LogisticRegression, got {type(model).__name__}"
        )


def influence_head(model: object, X_labeled: np.ndarray, y_labeled: np.ndarray) -> LinearHead:
    """The :class:`~ralif.LinearHead` that exact influence is computed with.

    Parameters
    ----------
    model : LinearHead or sklearn.linear_model.LogisticRegression
        Fitted on ``(X_labeled, y_labeled)``.
    X_labeled, y_labeled : ndarray
        The labeled items.

    Returns
    -------
    LinearHead
        ``model`` itself, or the logistic regression converted and polished to the
        exact optimum of the same objective.

    Raises
    ------
    RalifInputError
        For any other model: its curvature at an optimum is unknown, so influence would
        be a guess.
    """
    from ralif.head import LinearHead

    check_influence_model(model)
    if isinstance(model, LinearHead):
        return model
    return LinearHead.from_sklearn(model, X_labeled, y_labeled)
