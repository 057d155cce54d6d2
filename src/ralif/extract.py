"""Features of a sharded image pool from any ``torch.nn.Module``, written as ``.npy`` shards.

:func:`extract_features` runs an encoder over image shards (``.npy`` arrays of images,
read memory-mapped, a batch at a time) and writes the features as ``.npy`` shards of
``shard_rows`` rows as it goes, each shard written to a temporary name and renamed when
complete. A ``manifest.json`` in the output folder records what the shards were made
from (the image shards' names, shapes, sizes and modification times, and a digest of the
encoder's weights) and whether the run failed; a second run with the same inputs skips
the shards already written, so a run that was killed or failed resumes where it stopped.
A run with other images or another encoder is refused rather than mixed in, unless the
run there failed with an error: its shards are then replaced (other files are left as
they are). The output folder is a pool for :mod:`ralif.pools.streaming` (``ralif select
--features OUT``), so it must hold no other ``.npy`` files.

:func:`load_encoder` builds the encoder a command line names (``ralif extract``): one of
:mod:`ralif.models.encoders` or any ``package.module:attr``, with weights read by
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ralif._files import (
    _NPY_HEADER_MAX,
    MAX_ARRAY_BYTES_ENV,
    _npy_layout,
    _refuse_pickled,
    _size,
    max_array_bytes,
    os_error,
)
from ralif._params import POSITIVE_INT, validate_params
from ralif._validation import RalifInputError, _format_rows
from ralif.io import output_folder
from ralif.pools.sources import expand_shards

if TYPE_CHECKING:
    import torch

MANIFEST = "manifest.json"
_SHARD_NAME = re.compile(r"part-\d{5,}\.npy")
_OWN_TEMP = re.compile(r"\.(part-\d{5,}\.npy|manifest\.json)\.tmp")
_MANIFEST_KEYS = ("images", "encoder", "shard_rows", "rows")
_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK\x03\x04"


class _EncoderFailure(RalifInputError):
    """The encoder (or a transform), code of the caller's, raised or exited on the images."""

    def __init__(self, who: str, reason: str) -> None:
        super().__init__(f"{who} failed on the images: {reason}")
        self.reason = reason


def _npy_header(path: str, where: str) -> tuple[tuple[int, ...], np.dtype, int, int]:
    """``(shape, dtype, header length, file size)`` of the ``.npy`` file ``path``.

    Only the header is read, and only once it is known to fit in the file: an empty
    file, an ``.npz``, another format and a forged header length are each refused in
    one line, before anything is allocated.
    """
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        head = fh.read(12)
        if size == 0:
            raise RalifInputError(f"{where} is not a .npy file (empty)")
        if head.startswith(_ZIP_MAGIC):
            raise RalifInputError(
                f"{where} is an .npz archive: image shards must be .npy files (numpy.save), "
                "which are read memory-mapped; save its image array with numpy.save"
                if path.lower().endswith(".npz")
                else f"{where} is a zip archive (an .npz?), not a .npy file: image shards must "
                "be .npy files (numpy.save)"
            )
        if not head.startswith(_NPY_MAGIC):
            raise RalifInputError(
                f"{where} is not a .npy file (corrupt or another format): image shards must be "
                ".npy files (numpy.save)"
            )
        width = 2 if head[6:7] == b"\x01" else 4  # the header length: 2 bytes in version 1
        if len(head) >= 8 + width:
            length = int.from_bytes(head[8 : 8 + width], "little")
            if 8 + width + length > size:
                raise RalifInputError(
                    f"{where} is not a whole .npy file (corrupt or truncated): its header of "
                    f"{_size(length)} does not fit in the file's {_size(size)}"
                )
            if length > _NPY_HEADER_MAX:
                raise RalifInputError(
                    f"{where} has a header of {_size(length)}, more than numpy reads "
                    f"({_size(_NPY_HEADER_MAX)}): corrupt or forged"
                )
        fh.seek(0)
        shape, _, dtype, header = _npy_layout(fh, where)
    return shape, dtype, header, size


def _image_paths(images: object) -> list[str]:
    if isinstance(images, (list, tuple)):
        return [str(p) for p in images]
    s = str(images)
    p = Path(s)
    if p.is_file():
        return [s]
    if not any(c in s for c in "*?["):
        if not p.exists():
            raise RalifInputError(f"images not found: {s}")
        if not p.is_dir():
            raise RalifInputError(f"images path {s} is neither a regular file nor a folder")
    return expand_shards(s)


def _read_image_shards(
    images: object,
) -> list[tuple[str, tuple[int, ...], tuple[int, int], np.dtype]]:
    """``(path, shape, (size, mtime_ns), dtype)`` of each image shard, checked, in order."""
    out = []
    for path in _image_paths(images):
        p = Path(path)
        where = f"image shard {path}"
        if not p.is_file():
            raise RalifInputError(f"{where} is missing or not a regular file")
        with os_error("read", where):
            shape, dtype, header, size = _npy_header(path, where)
            st = p.stat()
        _refuse_pickled(dtype, where)
        if len(shape) not in (3, 4) or dtype.kind not in "uif":
            raise RalifInputError(
                f"{where} must hold numeric images (n, H, W[, C]) or (n, C, H, W), "
                f"got shape {shape} ({dtype})"
            )
        if any(n < 0 for n in shape):
            raise RalifInputError(f"{where} is corrupt: its header announces shape {shape}")
        if 0 in shape[1:]:
            raise RalifInputError(f"{where}: images of shape {shape[1:]} have no pixels")
        count = 1
        for n in shape:
            count *= n  # Python integers: a forged shape cannot overflow
        if size < header + count * dtype.itemsize:
            raise RalifInputError(
                f"{where} is truncated: its header announces shape {shape} ({dtype}) but "
                f"the file is {_size(size)}"
            )
        out.append((path, shape, (int(st.st_size), int(st.st_mtime_ns)), dtype))
    shapes = {s[1:] for _, s, _, _ in out}
    if len(shapes) > 1:
        raise RalifInputError(f"image shards hold images of different shapes: {sorted(shapes)}")
    kinds = {"integers" if d.kind in "ui" else "floats" for _, _, _, d in out}
    if len(kinds) > 1:
        first: dict[str, str] = {}
        for path, _, _, d in out:
            first.setdefault("integers" if d.kind in "ui" else "floats", path)
        raise RalifInputError(
            f"image shards hold integers ({first['integers']}) and floats ({first['floats']}): "
            "integers are scaled to [0, 1] and floats are not; save them all in one dtype"
        )
    if sum(s[0] for _, s, _, _ in out) == 0:
        raise RalifInputError(f"the image shards hold no images ({len(out)} of 0 rows)")
    _check_memory(1, out)
    return out


def _image_shards(images: object) -> list[tuple[str, tuple[int, ...], tuple[int, int]]]:
    """``(path, shape, (size, mtime_ns))`` of each image shard, in order."""
    return [(path, shape, stamp) for path, shape, stamp, _ in _read_image_shards(images)]


def _check_memory(rows: int, sources: list) -> None:
    """Refuse a batch of ``rows`` images that would need more than :func:`max_array_bytes`."""
    cap = max_array_bytes()
    shape = sources[0][1][1:]
    pixels = 1
    for n in shape:
        pixels *= n
    itemsize = max(d.itemsize for *_, d in sources)
    need = rows * pixels * (itemsize + 4)  # as read, and as float32
    if cap is not None and need > cap:
        what = "an image" if rows == 1 else f"a batch of {rows} images"
        hint = "" if rows == 1 else "; lower the batch size (--batch-size)"
        raise RalifInputError(
            f"{what} of shape {shape} needs {_size(need)} once read, more than "
            f"{_cap_source()} ({_size(cap)}){hint}"
        )


def _cap_source() -> str:
    """What sets :func:`max_array_bytes` now, for a message."""
    if os.environ.get(MAX_ARRAY_BYTES_ENV, "").strip():
        return f"the {MAX_ARRAY_BYTES_ENV} limit"
    return "the memory available"


def encoder_digest(encoder: torch.nn.Module) -> str:
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


def _channels(shape: tuple[int, ...]) -> int:
    """Channels of images of ``shape`` (a batch) as :func:`default_transform` lays them out."""
    if len(shape) == 3:
        return 1
    if shape[-1] in (1, 3, 4) and shape[1] not in (1, 3, 4):
        return int(shape[-1])
    return int(shape[1])


def default_transform(batch: np.ndarray) -> torch.Tensor:
    """Images to a float tensor (n, C, H, W): integers scaled to [0, 1], channels first.

    A grey image (n, H, W) gets one channel; (n, H, W, 3 or 4) is taken as channels-last.
    Floats beyond float32's range become inf (:func:`extract_features` refuses them).

    Parameters
    ----------
    batch : ndarray
        Images (n, H, W), (n, H, W, C) or (n, C, H, W), of integers or floats.

    Returns
    -------
    torch.Tensor
        float32, (n, C, H, W).

    Examples
    --------
    >>> import numpy as np
    >>> x = default_transform(np.full((2, 8, 8, 3), 255, dtype=np.uint8))
    >>> tuple(x.shape), float(x.max())
    ((2, 3, 8, 8), 1.0)
    """
    import torch

    x = np.asarray(batch)
    with np.errstate(over="ignore", invalid="ignore"):  # refused after, naming the images
        x = x.astype(np.float32) / 255.0 if x.dtype.kind in "ui" else x.astype(np.float32)
    if x.ndim == 3:
        x = x[:, None]
    elif x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    return torch.from_numpy(x)


@validate_params({"shard_rows": POSITIVE_INT, "batch_size": POSITIVE_INT})
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
        All integers (scaled to [0, 1]) or all floats, finite.
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
        When an image shard is not a whole ``.npy`` file of numeric images, or holds
        NaN or inf; when the encoder raises (or exits) on the images, or returns
        anything but one row of finite features per image; when ``out`` holds shards
        made from other images or another encoder by a run that did not fail, or other
        ``.npy`` files. A run that failed leaves its ``manifest.json`` marked so: the
        next run resumes it (same images and encoder) or replaces its shards.

    Examples
    --------
    >>> import tempfile, numpy as np, torch
    >>> folder = tempfile.mkdtemp()
    >>> np.save(f"{folder}/img-0.npy", np.zeros((5, 8, 8), dtype=np.uint8))
    >>> encoder = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3))
    >>> paths = extract_features(encoder, f"{folder}/img-0.npy", f"{folder}/f", quiet=True)
    >>> [p.name for p in paths], np.load(paths[0]).shape
    (['part-00000.npy'], (5, 3))
    """
    import torch
    from tqdm.auto import tqdm

    from ralif.models.devices import resolve_device

    if not isinstance(encoder, torch.nn.Module):
        raise RalifInputError(f"encoder must be a torch.nn.Module, got {type(encoder).__name__}")
    dev = resolve_device(device)
    read = _read_image_shards(images)
    manifest = _manifest(read, encoder, shard_rows)
    _check_memory(min(batch_size, manifest["rows"]), read)
    folder = output_folder(out, "features folder")
    _claim(folder, manifest)
    # From here on the folder is this run's: a failure marks it so, and the next run
    # resumes it or, given other images or another encoder, replaces it.
    try:
        paths = _extract(encoder, read, folder, shard_rows, batch_size, dev, transform, quiet, tqdm)
    except Exception:
        with contextlib.suppress(OSError):
            _write_manifest(folder, {**manifest, "state": "failed"})
        raise
    _write_manifest(folder, {**manifest, "state": "complete"})
    return paths


def _manifest(read: list, encoder: torch.nn.Module, shard_rows: int) -> dict:
    """What a features folder is made from: the image shards (path, shape, stamp), the
    encoder's digest, the rows per shard and the rows in all."""
    sources = [(p, s, stamp) for p, s, stamp, _ in read]
    return {
        "images": [[p, list(s), list(stamp)] for p, s, stamp in sources],
        "encoder": encoder_digest(encoder),
        "shard_rows": shard_rows,
        "rows": sum(s[0] for _, s, _ in sources),
    }


def _extract(encoder, read, folder, shard_rows, batch_size, dev, transform, quiet, tqdm):
    import torch

    paths_in = [p for p, _, _, _ in read]
    n_total = sum(s[0] for _, s, _, _ in read)
    encoder = encoder.to(dev).eval()
    # Images go in as the encoder's own floats (a bfloat16 or float16 encoder gets them
    # so), and its features come out as float32.
    weights = [t for t in (*encoder.parameters(), *encoder.buffers()) if t.is_floating_point()]
    in_dtype = weights[0].dtype if weights else None
    n_shards = -(-n_total // shard_rows)
    paths = [folder / f"part-{k:05d}.npy" for k in range(n_shards)]
    widths = [_shard_width(paths[k], _rows_of(k, shard_rows, n_total)) for k in range(n_shards)]
    todo = [k for k in range(n_shards) if widths[k] is None]
    width = next((w for w in widths if w is not None), None)
    try:
        maps = [np.load(p, mmap_mode="r", allow_pickle=False) for p in paths_in]
    except (ValueError, OSError) as exc:  # a shard changed since its header was read
        raise RalifInputError(f"cannot read the image shards: {exc}") from None
    starts = np.cumsum([0] + [s[0] for _, s, _, _ in read])
    rows = _RowNames(paths_in, starts)
    user_transform = transform is not None
    transform = transform or default_transform
    who = f"the transform {_name(transform)}" if user_transform else None
    done_rows = n_total - sum(_rows_of(k, shard_rows, n_total) for k in todo)
    bar = tqdm(total=n_total, initial=done_rows, unit="img", disable=quiet, desc="features")
    with bar, torch.inference_mode():
        for k in todo:
            lo = k * shard_rows
            hi = lo + _rows_of(k, shard_rows, n_total)
            parts = []
            for b in range(lo, hi, batch_size):
                batch = _gather(maps, starts, b, min(hi, b + batch_size))
                x = _call(transform, batch, who) if who else transform(batch)
                x = _checked_input(x, batch, b, rows, user_transform, in_dtype, dev)
                feats = _call(encoder, x, f"the encoder {type(encoder).__name__}")
                out = _features(feats, len(batch), b, in_dtype)
                if width is not None and out.shape[1] != width:
                    raise RalifInputError(
                        f"the encoder returned {out.shape[1]} features for images "
                        f"{b}..{b + len(batch) - 1} but {width} before; it must return the "
                        "same number for every image"
                    )
                width = out.shape[1]
                parts.append(out)
                bar.update(len(batch))
            _write_shard(paths[k], np.concatenate(parts))
    return paths


def _name(obj: object) -> str:
    return getattr(obj, "__name__", None) or type(obj).__name__


def _call(fn, x, who: str):
    """``fn(x)``: code of the caller's, whose exceptions and exits are reported as its own."""
    try:
        return fn(x)
    except SystemExit as exc:
        raise _EncoderFailure(who, f"it called sys.exit({exc.code!r})") from exc
    except RalifInputError:
        raise
    except Exception as exc:
        raise _EncoderFailure(who, _reason(exc)) from exc


def _reason(exc: BaseException) -> str:
    """The first line of an exception's message, after its type unless torch's own."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    if isinstance(exc, RuntimeError) and first:  # torch's errors say what they are
        return first
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


class _RowNames:
    """Images named by their shard and row there, and by their number over the shards."""

    def __init__(self, paths: list[str], starts: np.ndarray) -> None:
        self.paths, self.starts = paths, starts

    def __call__(self, bad: np.ndarray, first: int) -> str:
        rows = np.flatnonzero(bad) + first
        k = int(np.searchsorted(self.starts, rows[0], side="right") - 1)
        local = rows[rows < self.starts[k + 1]] - self.starts[k]
        return (
            f"{self.paths[k]} rows {_format_rows(local)} (images {_format_rows(rows)}, "
            "counted from 0 over the shards in order)"
        )


def _checked_input(x, batch: np.ndarray, first: int, rows: _RowNames, user: bool, in_dtype, dev):
    """The transformed batch ``x`` on ``dev`` in the encoder's dtype, refused with the
    images named where it holds NaN or inf, and the cause: the images themselves, their
    conversion, or the cast to the encoder's dtype."""
    import torch

    n = len(batch)
    if not isinstance(x, torch.Tensor):
        raise RalifInputError(f"the transform returned a {type(x).__name__}, not a tensor")
    if x.ndim == 0 or x.shape[0] != n:
        raise RalifInputError(
            f"the transform returned a tensor of shape {tuple(x.shape)} for a batch of {n} "
            "images; it must keep one image per row"
        )
    x = x.to(dev)
    if not x.is_floating_point():
        return x
    bad = _bad_rows(x)
    if bad.any():
        raw = np.asarray(batch).reshape(n, -1)
        if raw.dtype.kind == "f" and not np.isfinite(raw[bad]).all():
            raw_bad = ~np.isfinite(raw).all(axis=1)
            raise RalifInputError(f"the images hold NaN or infinite values: {rows(raw_bad, first)}")
        if user:
            raise RalifInputError(
                f"the transform returned NaN or infinite values for finite images: "
                f"{rows(bad, first)}"
            )
        peak = float(np.abs(raw[bad]).max())
        raise RalifInputError(
            f"the images at {rows(bad, first)} exceed the range of float32 (values up to "
            f"{peak:.3g}) when converted to it; scale them down"
        )
    if in_dtype is None or x.dtype == in_dtype:
        return x
    cast = x.to(in_dtype)
    bad = _bad_rows(cast)
    if bad.any():
        big = torch.finfo(in_dtype).max
        hint = ", or use a float32 or bfloat16 encoder" if in_dtype == torch.float16 else ""
        raise RalifInputError(
            f"the images at {rows(bad, first)} exceed the range of {in_dtype} (largest {big:.6g}) "
            f"when cast for the encoder, whose weights are {in_dtype}; scale the images{hint}"
        )
    return cast


def _bad_rows(x) -> np.ndarray:
    """Rows of the tensor ``x`` holding NaN or inf, as a boolean array."""
    import torch

    return (~torch.isfinite(x).reshape(x.shape[0], -1).all(dim=1)).cpu().numpy()


def _features(feats: object, n: int, first: int, in_dtype=None) -> np.ndarray:
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
    if feats[0].numel() == 0:
        raise RalifInputError(
            f"the encoder returned no features (a tensor of shape {tuple(feats.shape)})"
        )
    flat = feats.reshape(n, -1)
    if flat.is_floating_point():
        bad = _bad_rows(flat)
        if bad.any():
            hint = (
                "; a float16 encoder overflows easily: use float32 or bfloat16"
                if flat.dtype == torch.float16 or in_dtype == torch.float16
                else ""
            )
            raise RalifInputError(
                f"the encoder returned NaN or infinite features (for images "
                f"{_format_rows(np.flatnonzero(bad) + first)}, counted from 0 over the shards "
                f"in order) from finite images{hint}"
            )
    out = flat.float().cpu().numpy()
    bad = ~np.isfinite(out).all(axis=1)
    if bad.any():  # finite before: beyond float32, in which the shards are kept
        raise RalifInputError(
            f"the encoder returned {flat.dtype} features beyond the range of float32, in which "
            f"feature shards are stored (for images {_format_rows(np.flatnonzero(bad) + first)}"
            ", counted from 0 over the shards in order); scale them down"
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


def _read_manifest(path: Path) -> dict | None:
    """The manifest at ``path`` when it is one of :func:`extract_features`, else None."""
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError, RecursionError, MemoryError):
        return None
    if not isinstance(old, dict) or not all(k in old for k in _MANIFEST_KEYS):
        return None
    return old


def _claim(folder: Path, manifest: dict) -> None:
    """Take ``folder`` for a run that writes ``manifest``, or refuse it.

    The folder's own run (the same manifest) is resumed; a run that failed with other
    images or another encoder has its shards removed; any other run, a manifest not
    written here, shards without one and other ``.npy`` files are refused, and left as
    they are.
    """
    path = folder / MANIFEST
    others = sorted(p.name for p in folder.glob("*.npy") if not _SHARD_NAME.fullmatch(p.name))
    if others:
        raise RalifInputError(
            f"{folder} holds {others[0]}, which is not a feature shard: the folder is read as "
            "a pool of all its .npy files; choose an empty folder"
        )
    if path.exists() or path.is_symlink():
        old = _read_manifest(path)
        if old is None:
            raise RalifInputError(
                f"{folder} holds a {MANIFEST} that is not one of ralif extract (it cannot be "
                "read as one); choose an empty folder"
            )
        same = {k: v for k, v in old.items() if k != "state"} == manifest
        if not same and old.get("state") == "failed":
            _remove_shards(folder)
        elif not same:
            if {**old, "encoder": None, "state": None} == {
                **manifest,
                "encoder": None,
                "state": None,
            }:
                raise RalifInputError(
                    f"{folder} holds features of the same images made by another encoder, or "
                    f"one with other weights (see {MANIFEST}); an encoder whose weights are "
                    "drawn at random anew on each run cannot resume: give it saved weights "
                    "with --weights, or seed its initialization; or choose an empty folder"
                )
            raise RalifInputError(
                f"{folder} holds features made from other images or another encoder (see "
                f"{MANIFEST}); choose an empty folder, or delete it to start again"
            )
    elif any(folder.glob("part-*.npy")):
        raise RalifInputError(
            f"{folder} holds feature shards but no {MANIFEST}; use an empty folder"
        )
    _write_manifest(folder, {**manifest, "state": "running"})


def _remove_shards(folder: Path) -> None:
    """Remove the shards (and temporary files) a failed run left in ``folder``."""
    for p in folder.iterdir():
        if _SHARD_NAME.fullmatch(p.name) or _OWN_TEMP.fullmatch(p.name):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()


def _write_manifest(folder: Path, manifest: dict) -> None:
    path = folder / MANIFEST
    tmp = path.with_name(f".{MANIFEST}.tmp")
    tmp.write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    os.replace(tmp, path)


def _shard_width(path: Path, rows: int) -> int | None:
    """The width of ``path`` when it is a whole shard of ``rows`` rows, else None.

    A shard is renamed into place once written, so one of the right header and size is
    whole; anything else there (a damaged or foreign file) is written again.
    """
    if not path.is_file():
        return None
    try:
        shape, dtype, header, size = _npy_header(str(path), f"feature shard {path}")
    except (RalifInputError, OSError):
        return None
    if len(shape) != 2 or shape[0] != rows or shape[1] < 1 or dtype != np.float32:
        return None
    if size != header + rows * shape[1] * 4:
        return None
    return shape[1]


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

    Raises
    ------
    RalifInputError
        As :func:`extract_features` does for the image shards.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> path = f"{tempfile.mkdtemp()}/img.npy"
    >>> np.save(path, np.zeros((2, 8, 8, 3), dtype=np.uint8))
    >>> image_channels(path)
    3
    """
    return _channels(_read_image_shards(images)[0][1])


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
    import torch

    from ralif._imports import import_object

    obj = import_object(f"{module_name}:{attr}", "encoder")
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
    import warnings

    import torch

    p = Path(path)
    if not p.exists():
        raise RalifInputError(f"weights file not found: {p}")
    if not p.is_file():
        raise RalifInputError(f"weights path is not a regular file: {p}")
    with os_error("read", f"weights {p}"):
        size = p.stat().st_size
        with open(p, "rb") as fh:
            head = fh.read(4)
    cap = max_array_bytes()
    if cap is not None and size > cap:
        raise RalifInputError(
            f"refusing to read weights {p}: the file is {_size(size)}, more than "
            f"{_cap_source()} ({_size(cap)})"
        )
    # The format before zip files (torch < 1.6) is a pickle read in place: a length it
    # announces is read from memory, never allocated beyond the file's own size.
    source = p if head == _ZIP_MAGIC else io.BytesIO(p.read_bytes())
    try:
        # torch warns of what it meets before it fails (an odd pickle protocol): its
        # warnings are shown once the file is read and checked, never before a refusal.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            obj = torch.load(source, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only" in str(exc).lower():
            raise RalifInputError(
                f"refusing to read weights {p}: it holds Python objects besides tensors, which "
                "could run code; save model.state_dict() instead"
            ) from None
        raise RalifInputError(
            f"cannot read weights {p} (corrupt or not torch.save): {_reason(exc)}"
        ) from None
    except Exception as exc:  # torch's readers raise many types for a damaged file
        raise RalifInputError(
            f"cannot read weights {p} (corrupt or not torch.save): {_reason(exc)}"
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
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
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
