"""Where a block function's products run: NumPy on the CPU, or torch on a GPU.

A query's passes over a pool (:mod:`ralif.pools.query`) are block functions that take the name
of a device and ask it for the few products they need: probabilities, a product with a
small matrix, and a gradient sum. On the CPU they are NumPy's; on a GPU torch's, with the
results back as NumPy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ralif._softmax import logits, softmax_inplace
from ralif._validation import RalifInputError

if TYPE_CHECKING:
    import torch


def gradient_sum(G: np.ndarray, block: np.ndarray) -> np.ndarray:
    """``G^T block``: a block's target gradient (C x d) from its logit gradients ``G``.

    The product runs in the features' precision (float32 features: a float32 product,
    with ``G`` rounded to float32), and comes back as float64 for the sums over blocks.
    Upcasting a float32 block instead costs a copy of it and a float64 product, about
    seven times the time, for digits the features do not have.

    Parameters
    ----------
    G : ndarray of shape (n, C)
        Each item's gradient of the target loss with respect to its logits.
    block : ndarray of shape (n, d)
        The items' features (float32 or float64).

    Returns
    -------
    ndarray of shape (C, d)
        ``G^T block``, float64.

    Examples
    --------
    >>> gradient_sum(np.ones((2, 1)), np.array([[1.0, 2.0], [3.0, 4.0]]))
    array([[4., 6.]])
    """
    return (G.astype(block.dtype, copy=False).T @ block).astype(np.float64, copy=False)


class NumpyDevice:
    """Block products on the CPU."""

    name = "cpu"

    def proba(self, block: np.ndarray, W: np.ndarray, b: np.ndarray | None) -> np.ndarray:
        return softmax_inplace(logits(block, W, b)).astype(np.float64, copy=False)

    def product(self, block: np.ndarray, M: np.ndarray) -> np.ndarray:
        """``block @ M.T`` in the block's dtype."""
        return block @ M.T.astype(block.dtype, copy=False)

    def gradient(self, G: np.ndarray, block: np.ndarray) -> np.ndarray:
        """``G.T @ block`` in the block's precision, as float64 (as in memory)."""
        return gradient_sum(G, block)

    def proba_and_product(
        self, block: np.ndarray, W: np.ndarray, b: np.ndarray | None, M: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """The probabilities and ``block @ M.T`` (float64) from one product with ``[W; M]``.

        One read of the block instead of two; each column is the same number as from its
        own product.
        """
        C = W.shape[0]
        Z = self.product(block, np.concatenate([W, M.astype(W.dtype, copy=False)]))
        Zw = Z[:, :C]
        if b is not None:
            Zw += b.astype(Zw.dtype, copy=False)
        P = softmax_inplace(Zw).astype(np.float64, copy=False)
        return P, Z[:, C:].astype(np.float64)


class TorchDevice(NumpyDevice):
    """The same products on a torch device (a GPU); results come back as NumPy."""

    def __init__(self, device: str) -> None:
        import torch

        self.torch = torch
        self.name = device
        self.device = torch.device(device)

    def _put(self, block: np.ndarray) -> torch.Tensor:
        # The passes ask for two products of the same block: send it to the device once.
        if block is not getattr(self, "_last_block", None):
            self._last_block = block
            self._last = self.torch.from_numpy(np.ascontiguousarray(block)).to(self.device)
        return self._last

    def proba(self, block: np.ndarray, W: np.ndarray, b: np.ndarray | None) -> np.ndarray:
        return softmax_inplace(self.product(block, W) + (0.0 if b is None else b)).astype(
            np.float64, copy=False
        )

    def product(self, block: np.ndarray, M: np.ndarray) -> np.ndarray:
        t = self._put(block)
        m = self.torch.as_tensor(np.ascontiguousarray(M), device=self.device, dtype=t.dtype)
        return (t @ m.T).cpu().numpy()

    def gradient(self, G: np.ndarray, block: np.ndarray) -> np.ndarray:
        t = self._put(block)
        g = self.torch.as_tensor(np.ascontiguousarray(G), device=self.device, dtype=t.dtype)
        return (g.T @ t).double().cpu().numpy()


def check_device(device: str) -> str:
    """``"cpu"``, or a torch device that exists here (``"cuda"``, ``"cuda:1"``)."""
    device = str(device)
    if device == "cpu":
        return device
    if device.startswith("cuda"):
        try:
            import torch
        except ImportError:
            raise RalifInputError("--device cuda needs torch: pip install 'ralif[torch]'") from None
        if not torch.cuda.is_available():
            raise RalifInputError(f"device {device!r} asked for, but torch sees no CUDA GPU")
        try:
            torch.empty(1, device=device)
        except (RuntimeError, AssertionError) as exc:
            raise RalifInputError(f"device {device!r} cannot be used: {exc}") from None
        return device
    raise RalifInputError(f"device must be 'cpu' or 'cuda[:N]', got {device!r}")


def block_device(name: str) -> NumpyDevice:
    """The products of a block function on ``name`` (``"cpu"`` or a checked torch device)."""
    return NumpyDevice() if name == "cpu" else TorchDevice(name)
