"""The passes of a streamed query on a ``dask.distributed`` cluster.

Each pass of :mod:`ralif.pools.streaming` is a map over blocks of the pool; on a cluster every
block is a task on a worker, which reads its rows itself (from the shared files, or
from the dask array's chunk) and sends back only the block's small result. The client
adds the results in block order, so the picks are the single-process picks.

Any cluster dask can reach works: a scheduler address (``tcp://host:8786``, from
``dask scheduler``, dask-jobqueue, dask-kubernetes or a managed service), or
``local:N``, a cluster of N worker processes on this machine. Needs the ``dask``
extra: ``pip install 'ralif[dask]'``.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

from ralif._validation import RalifInputError

if TYPE_CHECKING:
    import socket

    import distributed
    import numpy as np

    from ralif.pools.sources import PoolSource

_LOCAL = re.compile(r"^local(?::(\d+))?$")

_T = TypeVar("_T")


def _distributed() -> ModuleType:
    try:
        import distributed
    except ImportError:
        raise RalifInputError(
            "running on a dask cluster needs dask.distributed: pip install 'ralif[dask]'"
        ) from None
    return distributed


@contextmanager
def dask_client(spec: object) -> Iterator[distributed.Client]:
    """A connected ``distributed.Client`` for ``spec``, closed (with its cluster) after.

    Parameters
    ----------
    spec : str or distributed.Client
        ``"local:N"`` (N worker processes here, one thread each), a scheduler address
        such as ``"tcp://host:8786"``, or a client, used as it is and left open.

    Yields
    ------
    distributed.Client
    """
    distributed = _distributed()
    if isinstance(spec, distributed.Client):
        yield spec
        return
    text = str(spec).strip()
    m = _LOCAL.match(text)
    if m:
        n = int(m.group(1) or 2)
        if not 1 <= n <= 256:
            raise RalifInputError(f"--dask local:N needs 1 <= N <= 256, got {n}")
        cluster = distributed.LocalCluster(
            n_workers=n,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.ERROR,
        )
        client = distributed.Client(cluster)
        try:
            yield client
        finally:
            client.close()
            cluster.close()
        return
    if "://" not in text and not re.match(r"^[\w.\-\[\]:]+:\d+$", text):
        raise RalifInputError(
            f"--dask must be local:N or a scheduler address such as tcp://host:8786, got {text!r}"
        )
    _probe_scheduler(text)
    try:
        client = distributed.Client(text, timeout=f"{CONNECT_SECONDS:g}s")
    except (OSError, TimeoutError, ValueError) as exc:
        raise RalifInputError(f"cannot reach the dask scheduler at {text}: {exc}") from None
    try:
        yield client
    finally:
        client.close()


PROBE_SECONDS = 5.0
"""How long a scheduler's address may take to accept a TCP connection, and then to
send its greeting (the default ``timeout`` of :func:`_probe_scheduler`)."""

CONNECT_SECONDS = 20.0
"""How long dask's client may take to connect once the probe has found a scheduler."""

_TCP_SCHEMES = ("tcp", "tls", "ws", "wss")


def _probe_scheduler(address: str, timeout: float | None = None) -> None:
    """Refuse at once a scheduler address where nothing accepts a connection.

    dask retries a refused connection until its timeout (:data:`CONNECT_SECONDS` here,
    30 s by default); one plain connection attempt tells a closed port or an unknown
    host in milliseconds, and an address that drops packets in ``timeout`` seconds
    (None: :data:`PROBE_SECONDS`), which also bounds the wait for the greeting.
    """
    import socket

    from distributed.comm.addressing import parse_address, parse_host_port

    if timeout is None:
        timeout = PROBE_SECONDS

    try:
        scheme, location = parse_address(address)
    except ValueError as exc:
        raise RalifInputError(f"--dask {address!r} is not a scheduler address: {exc}") from None
    if scheme not in _TCP_SCHEMES:
        return  # inproc, ucx: no TCP port to try
    try:
        host, port = parse_host_port(location)
    except ValueError:
        raise RalifInputError(
            f"--dask {address!r} names no port: give the scheduler's, e.g. {scheme}://host:8786"
        ) from None
    try:
        conn = socket.create_connection((host, port), timeout=timeout)
    except socket.gaierror as exc:
        raise RalifInputError(
            f"cannot reach the dask scheduler at {address}: host {host!r} is unknown "
            f"({exc.strerror})"
        ) from None
    except ConnectionRefusedError:
        raise RalifInputError(
            f"cannot reach the dask scheduler at {address}: nothing listens on port {port} of "
            f"{host} (connection refused); start it with: dask scheduler --port {port}"
        ) from None
    except TimeoutError:
        raise RalifInputError(
            f"cannot reach the dask scheduler at {address}: no answer within {timeout:g} s"
        ) from None
    except OSError as exc:
        raise RalifInputError(
            f"cannot reach the dask scheduler at {address}: {exc.strerror or exc}"
        ) from None
    with conn:
        if scheme == "tcp":  # behind tls or ws the greeting is not plain bytes
            problem = _greeting_problem(conn, timeout)
            if problem:
                raise RalifInputError(
                    f"{address} is not a dask scheduler ({problem}); give the scheduler's "
                    "address (port 8786 unless set otherwise), not its dashboard's"
                )


_GREETING_BYTES = 1 << 16
"""The most a scheduler's greeting may take; a few dozen bytes in practice."""


def _greeting_problem(conn: socket.socket, timeout: float) -> str | None:
    """What is wrong with the first message on a fresh connection, or None if it is
    a dask greeting.

    A dask server speaks first: one message of length-prefixed frames (a little-endian
    uint64 byte count, a frame count, the frame sizes, then a msgpack map naming its
    Python version and pickle protocol). An HTTP server waits for a request instead,
    where dask's own client would wait for ever or read ``HTTP/1.1 4`` as the size of
    a frame of exbibytes; here all the reads together take at most ``timeout`` seconds.
    """
    import struct

    deadline = time.monotonic() + timeout
    data = b""

    def read_to(n: int) -> bool:
        nonlocal data
        while len(data) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            conn.settimeout(left)
            try:
                chunk = conn.recv(n - len(data))
            except OSError:  # a timeout too
                return False
            if not chunk:
                return False
            data += chunk
        return True

    if not read_to(8):
        if data:
            return "its first message was cut short"
        return f"it sent nothing within {timeout:g} s of connecting, as a web server does"
    (size,) = struct.unpack("<Q", data[:8])
    if not 16 <= size <= _GREETING_BYTES:
        return "its first message is not a dask message"
    if not read_to(8 + size):
        return "its first message was cut short"
    (frames,) = struct.unpack("<Q", data[8:16])
    if not 1 <= frames <= 16 or 16 + 8 * frames > 8 + size:
        return "its first message is not a dask message"
    if b"pickle-protocol" not in data:
        return "its first message is not a dask greeting"
    return None


def default_client() -> distributed.Client | None:
    """The dask client of this process, if one was created; else None."""
    try:
        import distributed
    except ImportError:
        return None
    try:
        return distributed.default_client()
    except ValueError:
        return None


def _run_block(
    chunk: Any,
    local: np.ndarray | None,
    fn: Callable[..., _T],
    args: tuple,
    layout: tuple[str, int, np.dtype],
    start: int,
    check: bool,
) -> _T:
    from ralif.pools.sources import checked_block, checked_results

    name, width, dtype = layout
    # As a read of the source: float features of its width (and, with check, finite),
    # an error naming the pool rows.
    chunk = checked_block(chunk, name, start, width, finite=check).astype(dtype, copy=False)
    block = chunk if local is None else chunk[local]
    stop = start + chunk.shape[0]
    reread = partial(checked_block, chunk, name, start, width)
    return checked_results(fn(block, *args), reread, name, start, stop)


def gather_in_order(
    client: distributed.Client,
    run_partition: Callable[..., _T],
    source: PoolSource,
    tasks: Sequence[tuple[int, int, np.ndarray | None]],
    fn: Callable[..., _T],
    args: tuple,
    window: int = 256,
    check: bool = True,
) -> Iterator[_T]:
    """Results of ``fn`` over every task's block, computed on the workers, in task order.

    At most ``window`` tasks are in flight, so the client never holds more than that
    many results. ``check`` as in ``PoolSource.read``: whether each block is scanned for
    NaN, inf and values too large before ``fn`` (non-finite results are always traced
    back to the block's rows).

    Parameters
    ----------
    client : distributed.Client
        A connected client (:func:`dask_client`).
    run_partition : callable
        ``run_partition(source, start, stop, local, fn, args, check)``, run on a worker
        for a source read from files: reads the block and returns ``fn(block, *args)``.
    source : PoolSource
        The pool; a :class:`ralif.pools.sources.DaskArrayPool` has each block computed from
        its dask array's chunk instead.
    tasks : sequence of (start, stop, local)
        The blocks: source rows ``start:stop``, and the block's rows to keep
        (``local``, indices into the block) or None for all of them. For a dask array
        each ``start`` is that of one of its chunks.
    fn : callable
        ``fn(block, *args)``, run on a worker; its result must be picklable.
    args : tuple
        Sent to every worker once (scattered), not with each task.
    window : int, default=256
        Tasks in flight at most.
    check : bool, default=True
        Scan each block for values that are not finite or too large before ``fn``.

    Returns
    -------
    iterator
        ``fn``'s result of each task, in the order of ``tasks``.
    """
    import dask

    from ralif.pools.sources import DaskArrayPool

    [args_f] = client.scatter([args], broadcast=True, hash=False)
    if isinstance(source, DaskArrayPool):
        chunks = source.array.to_delayed().ravel()
        index = {start: k for k, (start, _) in enumerate(source.partitions(1))}
        layout = (source.name, source.n_features, source.dtype)

        def submit(task: tuple[int, int, np.ndarray | None]) -> distributed.Future:
            start, _, local = task
            chunk = chunks[index[start]]
            run = dask.delayed(_run_block)(chunk, local, fn, args_f, layout, start, check)
            return client.compute(run)

    else:
        [source_f] = client.scatter([source], broadcast=True, hash=False)

        def submit(task: tuple[int, int, np.ndarray | None]) -> distributed.Future:
            start, stop, local = task
            return client.submit(
                run_partition, source_f, start, stop, local, fn, args_f, check, pure=False
            )

    pending: list[distributed.Future | None] = [submit(t) for t in tasks[:window]]
    for i in range(len(tasks)):
        future = pending[i]
        assert future is not None  # only a future whose result was yielded is dropped
        if i + window < len(tasks):
            pending.append(submit(tasks[i + window]))
        yield future.result()
        pending[i] = None
