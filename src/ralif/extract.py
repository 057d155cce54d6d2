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

:func:`load_encoder` builds the encoder a command line names (``ralif extract``): one of
:mod:`ralif.models.encoders` or any ``package.module:attr``, with weights read by
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ralif._validation import RalifInputError
from ralif.sources import expand_shards

if TYPE_CHECKING:
    import torch

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
    """A digest of a module's class and weights: a different encoder gets another one.

    Parameters
    ----------
    encoder : torch.nn.Module
        Any module, its weights of any dtype (``bfloat16`` and ``float16`` included).

    Returns
    -------
    str
        The hexadecimal SHA-256 of the class name and of each state entry's name and bytes.
    """
    import torch

    h = hashlib.sha256(type(encoder).__name__.encode())
    for name, tensor in encoder.state_dict().items():
        h.update(name.encode())
        t = tensor.detach().cpu().contiguous()
        try:
            data = t.numpy().tobytes()
        except TypeError:  # a dtype numpy lacks (bfloat16, float8...): its raw bytes
            data = str(t.dtype).encode() + t.reshape(-1).view(torch.uint8).numpy().tobytes()
        h.update(data)
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
        ``.npy`` files of images, in series order: numbers in the names count as
        numbers (``img-2`` before ``img-10``); a numbered series with a gap is refused.
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
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise RalifInputError(f"{folder} (or a folder above it) is a file, not a folder") from None
    except OSError as exc:
        raise RalifInputError(
            f"cannot create the features folder {folder}: {exc.strerror}"
        ) from None
    manifest = {
        "images": [[p, list(s), list(stamp)] for p, s, stamp in sources],
        "encoder": encoder_digest(encoder),
        "shard_rows": shard_rows,
        "rows": n_total,
    }
    _check_manifest(folder, manifest)
    transform = transform or default_transform
    encoder = encoder.to(dev).eval()
    # Images go in as the encoder's own floats (a bfloat16 or float16 encoder gets them
    # so), and its features come out as float32.
    weights = [t for t in (*encoder.parameters(), *encoder.buffers()) if t.is_floating_point()]
    in_dtype = weights[0].dtype if weights else None
    n_shards = -(-n_total // shard_rows)
    paths = [folder / f"part-{k:05d}.npy" for k in range(n_shards)]
    todo = [k for k in range(n_shards) if not _complete(paths[k], _rows_of(k, shard_rows, n_total))]
    maps = [np.load(p, mmap_mode="r", allow_pickle=False) for p, _, _ in sources]
    starts = np.cumsum([0] + [s[0] for _, s, _ in sources])
    done_rows = n_total - sum(_rows_of(k, shard_rows, n_total) for k in todo)
    bar = tqdm(total=n_total, initial=done_rows, unit="img", disable=quiet, desc="features")
    with bar, torch.inference_mode():
        for k in todo:
            lo = k * shard_rows
            hi = lo + _rows_of(k, shard_rows, n_total)
            parts = []
            for b in range(lo, hi, batch_size):
                batch = _gather(maps, starts, b, min(hi, b + batch_size))
                x = transform(batch).to(dev)
                if in_dtype is not None and x.is_floating_point():
                    x = x.to(in_dtype)
                parts.append(_features(encoder(x), len(batch), b))
                bar.update(len(batch))
            _write_shard(paths[k], np.concatenate(parts))
    return paths


def _features(feats: object, n: int, first: int) -> np.ndarray:
    """The encoder's output for ``n`` images from image ``first`` on, as float32 rows."""
    import torch

    if not isinstance(feats, torch.Tensor):
        raise RalifInputError(
            f"the encoder returned a {type(feats).__name__}, not a tensor of features; "
            "wrap it in a torch.nn.Module whose forward returns one tensor (for instance "
            "output[0] or output.last_hidden_state)"
        )
    if feats.ndim == 0 or feats.shape[0] != n:
        raise RalifInputError(
            f"the encoder returned a tensor of shape {tuple(feats.shape)} for a batch of {n} "
            "images; it must return one row of features per image"
        )
    if feats.is_complex():
        raise RalifInputError(f"the encoder returned {feats.dtype} features, not real numbers")
    out = feats.reshape(n, -1).float().cpu().numpy()
    bad = ~np.isfinite(out).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)[:10] + first
        raise RalifInputError(
            f"the encoder returned NaN or infinite features (for images {rows.tolist()}, "
            "counted from 0 over the shards in order); a float16 encoder overflows easily: "
            "use float32 or bfloat16"
        )
    return out


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
            if isinstance(old, dict) and {**old, "encoder": None} == {**manifest, "encoder": None}:
                raise RalifInputError(
                    f"{folder} holds features of the same images made by another encoder, or "
                    f"one with other weights (see {MANIFEST}); an encoder whose weights are drawn at random "
                    "anew on each run cannot resume: give it saved weights with --weights, or "
                    "seed its initialization; or choose an empty folder"
                )
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


def image_channels(images: object) -> int:
    """Channels of the images as an encoder receives them (after :func:`default_transform`).

    Parameters
    ----------
    images : path, glob or list of paths
        As for :func:`extract_features`.

    Returns
    -------
    int
    """
    path = _image_shards(images)[0][0]
    first = np.load(path, mmap_mode="r", allow_pickle=False)[:1]
    return int(default_transform(np.asarray(first)).shape[1])


def load_encoder(
    spec: str, in_channels: int = 3, weights: str | os.PathLike | None = None
) -> torch.nn.Module:
    """The encoder ``spec`` names, with ``weights`` loaded into it.

    Parameters
    ----------
    spec : str
        A name of :data:`ralif.models.encoders.ENCODERS` (``"cnn"``, ``"resnet18"``),
        whose output is then its feature vector (before the classifier); or
        ``"package.module:attr"`` importable from here, where ``attr`` is a
        ``torch.nn.Module`` or a callable returning one (called without arguments),
        whose output is taken as the features.
    in_channels : int, default=3
        Channels of the images (a named encoder is built for them).
    weights : path-like, optional
        A file written by ``torch.save``: a state dict, or a ralif checkpoint holding one
        (``{"state": ...}``); read with ``weights_only=True``, never unpickled. Its keys
        and shapes must be those of the encoder. Without it the encoder keeps the
        weights of its initialization, seeded with ``torch.manual_seed(0)`` (for
        ``package.module:attr`` too: the import and the call run under that seed, the
        random state of the caller left as it was), so the same command gives the same
        weights and a stopped run resumes.

    Returns
    -------
    torch.nn.Module

    Raises
    ------
    RalifInputError
        For an unknown name, a module or attribute that cannot be had, an attribute
        that is not a module, or weights that cannot be read or do not fit.
    """
    import torch

    from ralif.models.encoders import ENCODERS, FeatureOutput, make_encoder

    spec = str(spec)
    state = _read_weights(weights) if weights is not None else None
    if spec in ENCODERS:
        fc = state.get("fc.weight") if state is not None else None
        n_classes = int(fc.shape[0]) if fc is not None and fc.ndim == 2 else 10
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            encoder = make_encoder(spec, in_channels=in_channels, n_classes=n_classes)
        if state is not None:
            _load_state(encoder, state, weights, spec)
        return FeatureOutput(encoder)
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise RalifInputError(
            f"unknown encoder {spec!r}: use {', '.join(ENCODERS)}, or package.module:attr "
            "for a torch.nn.Module of your own"
        )
    # Built with the seed of the named encoders, so that an encoder whose weights are
    # drawn at random (a module made at import, or by the callable) gets the same weights
    # on every run, and a stopped run resumes.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        obj = _import_encoder(spec, module_name, attr)
    if state is not None:
        _load_state(obj, state, weights, spec)
    return obj


def _import_encoder(spec: str, module_name: str, attr: str):
    """The module ``module_name:attr`` names, called when it is a callable."""
    import importlib

    import torch

    try:
        obj = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        hint = ""
        if missing and (module_name == missing or module_name.startswith(missing + ".")):
            hint = (
                "; a module in the current folder is found only with it on the import path: "
                "run with PYTHONPATH=. (or install the package)"
            )
        raise RalifInputError(
            f"encoder {spec!r}: cannot import {module_name}: {exc}{hint}"
        ) from None
    except SystemExit as exc:
        raise RalifInputError(
            f"encoder {spec!r}: importing {module_name} called sys.exit({exc.code!r}); "
            "name a module whose import defines the encoder without exiting"
        ) from None
    except Exception as exc:  # an import runs the module's code: anything may fail
        raise RalifInputError(f"encoder {spec!r}: cannot import {module_name}: {exc}") from None
    try:
        for part in attr.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        raise RalifInputError(f"encoder {spec!r}: {module_name} has no attribute {attr}") from None
    if not isinstance(obj, torch.nn.Module):
        if not callable(obj):
            raise RalifInputError(
                f"encoder {spec!r} is a {type(obj).__name__}, not a torch.nn.Module or a "
                "callable returning one"
            )
        try:
            obj = obj()
        except SystemExit as exc:
            raise RalifInputError(
                f"encoder {spec!r}: calling {attr}() called sys.exit({exc.code!r})"
            ) from None
        except Exception as exc:  # the user's constructor: report whatever it raised
            raise RalifInputError(f"encoder {spec!r}: calling {attr}() failed: {exc}") from None
        if not isinstance(obj, torch.nn.Module):
            raise RalifInputError(
                f"encoder {spec!r}: {attr}() returned a {type(obj).__name__}, not a torch.nn.Module"
            )
    return obj


def _read_weights(path: str | os.PathLike) -> dict:
    """A state dict from a ``torch.save`` file, read without unpickling objects."""
    import pickle
    import zipfile

    import torch

    p = Path(path)
    if not p.exists():
        raise RalifInputError(f"weights file not found: {p}")
    if not p.is_file():
        raise RalifInputError(f"weights path is not a regular file: {p}")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only" in str(exc).lower():
            raise RalifInputError(
                f"refusing to read weights {p}: it holds Python objects besides tensors, which "
                "could run code; save model.state_dict() instead"
            ) from None
        raise RalifInputError(
            f"cannot read weights {p} (corrupt or not torch.save): {exc}"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RalifInputError(
            f"cannot read weights {p} (corrupt or not torch.save): {first}"
        ) from None
    if isinstance(obj, dict):
        for key in ("state", "state_dict"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not (
        isinstance(obj, dict)
        and obj
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    ):
        raise RalifInputError(
            f"weights {p} must hold a state dict (names to tensors), as "
            "torch.save(model.state_dict(), path) writes"
        )
    return obj


def _load_state(module, state: dict, path: object, spec: str) -> None:
    """Load ``state`` into ``module``, refusing (in one line) keys or shapes that differ."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [
        f"{k} is {tuple(state[k].shape)} in the file but {tuple(own[k].shape)} in the encoder"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]

    def listed(keys: list[str]) -> str:
        return ", ".join(keys[:5]) + (f", ... ({len(keys)} in all)" if len(keys) > 5 else "")

    problems = []
    if missing:
        problems.append(f"missing keys {listed(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {listed(unexpected)}")
    if shapes:
        problems.append(
            f"shape of {shapes[0]}" + (f" (and {len(shapes) - 1} more)" if len(shapes) > 1 else "")
        )
    if problems:
        raise RalifInputError(
            f"weights {path} do not fit the encoder {spec}: {'; '.join(problems)}"
        )
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        flat = " ".join(str(exc).split())
        raise RalifInputError(f"weights {path} do not fit the encoder {spec}: {flat}") from None
