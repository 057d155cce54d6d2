"""Features of a sharded image pool from any ``torch.nn.Module``, written as ``.npy`` shards.

:func:`extract_features` runs an encoder over image shards (``.npy`` arrays of images,
read memory-mapped, a batch at a time) and writes the features as ``.npy`` shards of
``shard_rows`` rows as it goes, each shard written to a temporary name and renamed when
complete. A ``manifest.json`` in the output folder records what the shards were made
from (the image shards' names, shapes, sizes and modification times, and a digest of the
encoder's weights); a second run with the same inputs skips the shards already written,
so a run that was killed resumes where it stopped, and a run with other images or
another encoder is refused rather than mixed in. The output folder is a pool for
:mod:`ralif.streaming` (``ralif select --features OUT``).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from ralif._validation import RalifInputError
from ralif.sources import expand_shards

MANIFEST = "manifest.json"


def _image_shards(images: object) -> list[tuple[str, tuple[int, ...], tuple[int, int]]]:
    """``(path, shape, (size, mtime_ns))`` of each image shard, in order."""
    if isinstance(images, (list, tuple)):
        paths = [str(p) for p in images]
    else:
        s = str(images)
        paths = [s] if Path(s).is_file() else expand_shards(s)
    out = []
    for path in paths:
        p = Path(path)
        if not p.is_file():
            raise RalifInputError(f"image shard {path} is missing or not a regular file")
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except ValueError as exc:
            raise RalifInputError(f"cannot read image shard {path}: {exc}") from None
        if arr.ndim not in (3, 4) or arr.dtype.kind not in "uif":
            raise RalifInputError(
                f"image shard {path} must hold numeric images (n, H, W[, C]) or (n, C, H, W), "
                f"got shape {arr.shape} ({arr.dtype})"
            )
        st = p.stat()
        out.append((path, tuple(arr.shape), (int(st.st_size), int(st.st_mtime_ns))))
    shapes = {s[1:] for _, s, _ in out}
    if len(shapes) > 1:
        raise RalifInputError(f"image shards hold images of different shapes: {sorted(shapes)}")
    return out


def encoder_digest(encoder: object) -> str:
    """A digest of a module's class and weights: a different encoder gets another one."""
    h = hashlib.sha256(type(encoder).__name__.encode())
    for name, tensor in encoder.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def default_transform(batch: np.ndarray):
    """Images to a float tensor (n, C, H, W): integers scaled to [0, 1], channels first.

    A grey image (n, H, W) gets one channel; (n, H, W, 3 or 4) is taken as channels-last.
    """
    import torch

    x = np.asarray(batch)
    x = x.astype(np.float32) / 255.0 if x.dtype.kind in "ui" else x.astype(np.float32)
    if x.ndim == 3:
        x = x[:, None]
    elif x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    return torch.from_numpy(x)


def extract_features(
    encoder: object,
    images: object,
    out: str | os.PathLike,
    *,
    shard_rows: int = 50_000,
    batch_size: int = 256,
    device: str = "auto",
    transform: object = None,
    quiet: bool = False,
) -> list[Path]:
    """Run ``encoder`` over sharded images, writing ``.npy`` feature shards as it goes.

    Parameters
    ----------
    encoder : torch.nn.Module
        Maps a batch of images ``(b, C, H, W)`` to features ``(b, ...)`` (flattened).
    images : path, glob or list of paths
        ``.npy`` files of images, taken in name order (a numbered series with a gap is
        refused).
    out : path-like
        Folder for ``part-00000.npy``, ``part-00001.npy``... and ``manifest.json``.
    shard_rows : int, default=50_000
        Rows per output shard.
    batch_size : int, default=256
    device : {"auto", "cpu", "cuda", "cuda:N"}, default="auto"
    transform : callable, optional
        ``ndarray batch -> torch.Tensor``; default :func:`default_transform`.
    quiet : bool, default=False
        No progress bar.

    Returns
    -------
    list of Path
        The output shards, in order.

    Raises
    ------
    RalifInputError
        When ``out`` holds shards made from other images or another encoder.
    """
    import torch
    from tqdm.auto import tqdm

    from ralif.models.devices import resolve_device

    for name, value in (("shard_rows", shard_rows), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise RalifInputError(f"{name} must be a positive integer, got {value!r}")
    if not isinstance(encoder, torch.nn.Module):
        raise RalifInputError(f"encoder must be a torch.nn.Module, got {type(encoder).__name__}")
    dev = resolve_device(device)
    sources = _image_shards(images)
    n_total = sum(s[0] for _, s, _ in sources)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    manifest = {
        "images": [[p, list(s), list(stamp)] for p, s, stamp in sources],
        "encoder": encoder_digest(encoder),
        "shard_rows": shard_rows,
        "rows": n_total,
    }
    _check_manifest(folder, manifest)
    transform = transform or default_transform
    encoder = encoder.to(dev).eval()
    n_shards = -(-n_total // shard_rows)
    paths = [folder / f"part-{k:05d}.npy" for k in range(n_shards)]
    todo = [k for k in range(n_shards) if not _complete(paths[k], _rows_of(k, shard_rows, n_total))]
    maps = [np.load(p, mmap_mode="r", allow_pickle=False) for p, _, _ in sources]
    starts = np.cumsum([0] + [s[0] for _, s, _ in sources])
    done_rows = n_total - sum(_rows_of(k, shard_rows, n_total) for k in todo)
    bar = tqdm(total=n_total, initial=done_rows, unit="img", disable=quiet, desc="features")
    with torch.inference_mode():
        for k in todo:
            lo = k * shard_rows
            hi = lo + _rows_of(k, shard_rows, n_total)
            parts = []
            for b in range(lo, hi, batch_size):
                batch = _gather(maps, starts, b, min(hi, b + batch_size))
                feats = encoder(transform(batch).to(dev))
                parts.append(feats.reshape(len(batch), -1).float().cpu().numpy())
                bar.update(len(batch))
            _write_shard(paths[k], np.concatenate(parts))
    bar.close()
    return paths


def _rows_of(k: int, shard_rows: int, n_total: int) -> int:
    return min(shard_rows, n_total - k * shard_rows)


def _gather(maps, starts, lo: int, hi: int) -> np.ndarray:
    """Images ``lo:hi`` of the concatenated shards."""
    parts = []
    k = int(np.searchsorted(starts, lo, side="right") - 1)
    while lo < hi:
        stop = min(hi, int(starts[k + 1]))
        parts.append(np.asarray(maps[k][lo - starts[k] : stop - starts[k]]))
        lo, k = stop, k + 1
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _check_manifest(folder: Path, manifest: dict) -> None:
    path = folder / MANIFEST
    if path.exists():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, OSError):
            old = None
        if old != manifest:
            raise RalifInputError(
                f"{folder} holds features made from other images or another encoder (see "
                f"{MANIFEST}); choose an empty folder, or delete it to start again"
            )
        return
    if any(folder.glob("part-*.npy")):
        raise RalifInputError(
            f"{folder} holds feature shards but no {MANIFEST}; use an empty folder"
        )
    tmp = path.with_name(f".{MANIFEST}.tmp")
    tmp.write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    os.replace(tmp, path)


def _complete(path: Path, rows: int) -> bool:
    """Whether ``path`` is a whole shard of ``rows`` rows (a rename made it, so it is)."""
    if not path.is_file():
        return False
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError):
        return False
    return arr.ndim == 2 and arr.shape[0] == rows


def _write_shard(path: Path, feats: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        np.save(fh, np.ascontiguousarray(feats, dtype=np.float32))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
