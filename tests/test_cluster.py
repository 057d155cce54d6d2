"""Streamed queries on a dask.distributed LocalCluster of two worker processes."""

from __future__ import annotations

import re
import signal
import socket
import struct

import numpy as np
import pytest

from ralif import RalifInputError
from ralif.pools.cluster import dask_client
from ralif.pools.streaming import streamed_select
from tests.conftest import require

N = 3000
HANG_SECONDS = 120
"""A bound on tests that would hang if the probe let dask wait: a guard, not a timing."""


@pytest.fixture()
def hang_guard():
    """Fail a test that hangs (an alarm after :data:`HANG_SECONDS`) instead of the suite."""

    def expired(signum, frame):
        pytest.fail(f"still running after {HANG_SECONDS} s: it hangs", pytrace=False)

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(HANG_SECONDS)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture()
def no_dask_client(monkeypatch, hang_guard):
    """dask's own client, which retries a refused or silent address for its whole
    timeout, fails the test as soon as it is made: the probe must refuse first."""
    distributed = require("distributed")

    class Forbidden(distributed.Client):
        def __new__(cls, *args, **kwargs):
            pytest.fail("dask's client was tried on an address the probe should refuse")

    monkeypatch.setattr(distributed, "Client", Forbidden)


@pytest.fixture(scope="module")
def client():
    require("distributed")
    with dask_client("local:2") as c:
        assert len(c.scheduler_info()["workers"]) == 2
        yield c


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    rng = np.random.default_rng(5)
    centers = rng.normal(size=(3, 10)) * 1.5
    y_true = rng.integers(3, size=N)
    X = (centers[y_true] + rng.normal(size=(N, 10))).astype(np.float32)
    folder = tmp_path_factory.mktemp("shards")
    for k in range(3):
        np.save(folder / f"part-{k}.npy", X[k * 1000 : (k + 1) * 1000])
    y = np.full(N, -1)
    y[:60] = y_true[:60]
    return str(folder / "part-*.npy"), X, y


@pytest.mark.parametrize("strategy", ["ralif", "margin", "badge"])
def test_two_workers_pick_what_one_process_picks(client, shards, strategy):
    pattern, _, y = shards
    here = streamed_select(pattern, y, 12, strategy, random_state=0, l2=0.1, block_rows=256)
    there = streamed_select(
        pattern, y, 12, strategy, random_state=0, l2=0.1, block_rows=256, client=client
    )
    np.testing.assert_array_equal(there.picks, here.picks)
    np.testing.assert_array_equal(there.scores, here.scores)


def test_dask_array_on_the_cluster_picks_what_one_process_picks(client, shards):
    da = require("dask.array")
    _, X, y = shards
    arr = da.from_array(X, chunks=(700, 10))
    here = streamed_select(arr, y, 12, random_state=1, l2=0.1)
    there = streamed_select(arr, y, 12, random_state=1, l2=0.1, client=client)
    np.testing.assert_array_equal(there.picks, here.picks)


def test_a_nan_shard_read_by_a_worker_is_a_clear_error_naming_it(client, tmp_path):
    X = np.random.default_rng(0).normal(size=(400, 4))
    X[250, 1] = np.nan
    np.save(tmp_path / "a-0.npy", X[:200])
    np.save(tmp_path / "a-1.npy", X[200:])
    y = np.full(400, -1)
    y[:20] = np.arange(20) % 2
    with pytest.raises(RalifInputError, match=r"a-1\.npy contains NaN in rows \[50\]"):
        streamed_select(str(tmp_path / "a-*.npy"), y, 5, l2=0.1, client=client, block_rows=64)


@pytest.mark.parametrize(
    "spec", ["local:0", "local:x", "my cluster", "local:9999", "tcp://127.0.0.1", "tls://[::1]"]
)
def test_a_bad_cluster_spec_is_refused(spec):
    require("distributed")
    with pytest.raises(RalifInputError, match="--dask"), dask_client(spec):
        pass


def _closed_port() -> int:
    """A port of this machine where nothing listens: bound, then released."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_scheduler_address_where_nothing_listens_fails_at_once_naming_it(no_dask_client):
    # Refused by the probe, before dask's client (which retries for its whole timeout).
    port = _closed_port()
    address = f"tcp://127.0.0.1:{port}"
    with (
        pytest.raises(RalifInputError, match=re.escape(address) + ".*connection refused") as err,
        dask_client(address),
    ):
        pass
    assert f"dask scheduler --port {port}" in str(err.value)


def test_a_running_schedulers_address_connects(client):
    address = client.scheduler.address
    assert address.startswith("tcp://")
    with dask_client(address) as other:
        assert len(other.scheduler_info()["workers"]) == 2


def test_select_with_a_closed_scheduler_port_exits_2_at_once_naming_it(
    tmp_path, capsys, no_dask_client
):
    from ralif.cli import main

    rng = np.random.default_rng(0)
    np.save(tmp_path / "X.npy", rng.normal(size=(50, 3)))
    np.save(tmp_path / "y.npy", np.r_[np.arange(10) % 2, np.full(40, -1)])
    address = f"tcp://127.0.0.1:{_closed_port()}"
    argv = ["select", "--features", str(tmp_path / "X.npy"), "--labels", str(tmp_path / "y.npy")]
    assert main([*argv, "--budget", "3", "--l2", "0.1", "--dask", address]) == 2
    out = capsys.readouterr()
    assert out.out == "" and out.err.count("\n") == 1
    assert f"cannot reach the dask scheduler at {address}" in out.err
    assert "(connection refused)" in out.err


def test_ralif_select_of_a_dask_array_runs_on_the_open_client(client, shards):
    import ralif
    from ralif.pools.cluster import default_client

    da = require("dask.array")
    _, X, y = shards
    distributed = require("distributed")
    assert default_client() is client
    with distributed.get_task_stream(client) as tasks:
        picks = ralif.select(da.from_array(X, chunks=(1000, 10)), y, 12, l2=0.1, random_state=2)
    np.testing.assert_array_equal(picks, ralif.select(X, y, 12, l2=0.1, random_state=2))
    keys = [str(t["key"]) for t in tasks.data]
    assert sum("_run_block" in k for k in keys) == 2 * 3  # two passes over three chunks


def test_an_integer_dask_array_is_converted_on_the_workers_in_every_pass(client, shards):
    # Pass 2 reads without the NaN scan: its chunks must still become floats.
    da = require("dask.array")
    _, X, y = shards
    Xi = np.round(X * 100).astype(np.int16)
    want = streamed_select(Xi.astype(np.float64), y, 12, random_state=1, l2=0.1)
    got = streamed_select(
        da.from_array(Xi, chunks=(700, -1)), y, 12, random_state=1, l2=0.1, client=client
    )
    np.testing.assert_array_equal(got.picks, want.picks)


class _Peer:
    """A TCP server in a thread: silent like an HTTP server waiting for a request, or
    answering every connection at once with ``greeting``."""

    def __init__(self, greeting: bytes | None) -> None:
        import socket
        import threading

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.address = f"tcp://127.0.0.1:{self.sock.getsockname()[1]}"
        self.greeting = greeting
        self.conns = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            if self.greeting is not None:
                conn.sendall(self.greeting)

    def close(self) -> None:
        self.sock.close()
        for c in self.conns:
            c.close()


def _message(frames: list[bytes]) -> bytes:
    """A dask-framed message: its byte count, the frame count, the frame sizes, frames."""
    body = struct.pack("<Q", len(frames)) + b"".join(struct.pack("<Q", len(f)) for f in frames)
    body += b"".join(frames)
    return struct.pack("<Q", len(body)) + body


SILENT_SECONDS = 0.05
"""The probe's injected timeout where the peer sends nothing more: it is waited out."""


@pytest.mark.parametrize(
    ("first", "problem"),
    [
        (b"", f"it sent nothing within {SILENT_SECONDS:g} s of connecting, as a web server does"),
        (b"HTTP/1.1 400 Bad Request\r\n\r\n", "its first message is not a dask message"),
        (b"\x05\x00\x00\x00\x00\x00\x00\x00hello", "its first message is not a dask message"),
        (b"\x05\x00\x00", "its first message was cut short"),
        (_message([b"x" * 40])[:20], "its first message was cut short"),
        (struct.pack("<QQ", 16, 99) + bytes(8), "its first message is not a dask message"),
        (
            _message([b"a msgpack map of something else"]),
            "its first message is not a dask greeting",
        ),
        (_message([b"...pickle-protocol..."]), None),
    ],
)
def test_the_first_message_on_a_connection_is_judged_as_a_dask_greeting(first, problem):
    from ralif.pools.cluster import _greeting_problem

    here, there = socket.socketpair()
    with here, there:
        there.sendall(first)  # all sent before the probe reads: no race with the timeout
        assert _greeting_problem(here, SILENT_SECONDS) == problem


@pytest.mark.parametrize(
    ("greeting", "problem"),
    [
        # An HTTP server (a dashboard port) waits for the request: dask hung here.
        (None, f"it sent nothing within {SILENT_SECONDS:g} s of connecting, as a web server does"),
        # dask read this as a 3 EiB frame.
        (
            b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n",
            "its first message is not a dask message",
        ),
        (b"\x05\x00\x00\x00\x00\x00\x00\x00hello", "its first message is not a dask message"),
    ],
)
def test_an_address_that_is_not_a_dask_scheduler_is_refused_in_one_line(
    greeting, problem, monkeypatch, tmp_path, capsys, no_dask_client
):
    from ralif.cli import main
    from ralif.pools import cluster

    # A silent peer is waited out for the injected timeout; one that sends is judged on
    # what it sent, however long that takes to arrive.
    monkeypatch.setattr(cluster, "PROBE_SECONDS", SILENT_SECONDS if greeting is None else 60.0)
    peer = _Peer(greeting)
    try:
        rng = np.random.default_rng(0)
        np.save(tmp_path / "X.npy", rng.normal(size=(50, 3)))
        np.save(tmp_path / "y.npy", np.r_[np.arange(10) % 2, np.full(40, -1)])
        argv = ["select", "--features", str(tmp_path / "X.npy")]
        argv += ["--labels", str(tmp_path / "y.npy"), "--budget", "3", "--l2", "0.1"]
        assert main([*argv, "--dask", peer.address]) == 2
    finally:
        peer.close()
    out = capsys.readouterr()
    assert out.out == "" and out.err.count("\n") == 1, out.err
    assert f"{peer.address} is not a dask scheduler ({problem})" in out.err


def test_the_probe_waits_for_a_greeting_as_long_as_it_is_told(monkeypatch, hang_guard):
    require("distributed")
    from ralif.pools import cluster

    # Were the given timeout ignored, the default would keep it waiting past the guard.
    monkeypatch.setattr(cluster, "PROBE_SECONDS", 10.0 * HANG_SECONDS)
    peer = _Peer(None)
    try:
        with pytest.raises(RalifInputError, match=f"sent nothing within {SILENT_SECONDS:g} s"):
            cluster._probe_scheduler(peer.address, timeout=SILENT_SECONDS)
    finally:
        peer.close()
