"""GPU checks and figures for streamed queries and feature extraction (run on a CUDA machine).

Run:  bash benchmarks/gpu_check.sh            (or .venv/bin/python benchmarks/gpu_check.py)

1. agreement: streamed picks with ``device="cuda"`` against ``device="cpu"`` for each
   streamable strategy on a 50,000 x 768 float32 pool (1,000 labeled, budget 100):
   whether the picks are the same, and the largest relative difference of the scores;
2. speed: a streamed RALIF query (d = 768, C = 10, 1,000 labeled, budget 1,000, l2 =
   0.01) on pools of ``--sizes`` items held in memory (so that the disk is not timed),
   on the CPU and on the GPU, with the stages' times;
3. extraction: images per second of ``ralif.extract.extract_features`` with a
   ResNet-18 over 32 x 32 colour images, CPU and GPU.

Every figure is printed; nothing is written but temporary files. Exit code 1 when CUDA's
scores differ from the CPU's by more than 1e-5 of the largest, or a top-k strategy picks
other items (RALIF's k-means++ draws may follow float32 rounding, so only its scores count).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

D, C = 768, 10


def pool(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian class clusters, float32, generated in chunks (no float64 copy)."""
    rng = np.random.default_rng(seed)
    centers = (rng.normal(size=(C, D)) * (12.0 / np.sqrt(D))).astype(np.float32)
    X = np.empty((n, D), dtype=np.float32)
    y = np.full(n, -1)
    for lo in range(0, n, 1 << 20):
        hi = min(n, lo + (1 << 20))
        r = np.random.default_rng([seed, lo])
        cls = r.integers(C, size=hi - lo)
        X[lo:hi] = r.standard_normal((hi - lo, D), dtype=np.float32)
        X[lo:hi] += centers[cls]
        if lo == 0:
            y[:1000] = cls[:1000]
    return X, y


def agreement() -> bool:
    from ralif.pools.streaming import streamed_select

    X, y = pool(50_000, seed=1)
    ok = True
    cases = [
        ("ralif", {}),
        ("ralif", {"score": "authors"}),
        ("ralif", {"candidates": "influence", "target": "entropy"}),
        ("ralif", {"weighting": "balanced"}),
        ("margin", {}),
        ("entropy", {}),
        ("least_confidence", {}),
        ("badge", {}),
    ]
    print("1. CUDA against CPU picks (50,000 x 768, budget 100)")
    for name, params in cases:
        kw = {"random_state": 0, "l2": 0.01, **params}
        cpu = streamed_select(X, y, 100, name, device="cpu", **kw)
        gpu = streamed_select(X, y, 100, name, device="cuda", **kw)
        same = np.array_equal(cpu.picks, gpu.picks)
        overlap = len(set(cpu.picks) & set(gpu.picks)) / 100
        both = np.isfinite(cpu.scores)
        scale = np.abs(cpu.scores[both]).max() or 1.0
        diff = np.abs(cpu.scores[both] - gpu.scores[both]).max() / scale
        print(
            f"   {name:<17} {params!s:<50} same picks: {same} (overlap {overlap:.2f}), "
            f"max score difference {diff:.1e} of the largest score"
        )
        # The scores are what the devices compute; the picks of a strategy that samples
        # (RALIF's k-means++ draws) may follow float32 rounding differences, so only the
        # scores must agree there, while top-k strategies must pick the same items.
        sampled = name == "ralif"
        ok &= diff <= 1e-5 and (sampled or same)
    return ok


def speed(sizes: list[int]) -> None:
    from ralif.pools.streaming import streamed_select

    print("2. streamed RALIF query, pool in memory, d=768, C=10, 1,000 labeled, budget 1,000")
    for n in sizes:
        t = time.perf_counter()
        X, y = pool(n)
        made = time.perf_counter() - t
        for device in ("cpu", "cuda"):
            t = time.perf_counter()
            q = streamed_select(X, y, 1000, device=device, random_state=0, l2=0.01)
            took = time.perf_counter() - t
            stages = ", ".join(f"{k} {v:.2f}" for k, v in q.seconds.items())
            print(
                f"   N={n:>11,} {device:<5} {took:7.2f} s  ({took / n * 1e9:.0f} ns/item; "
                f"{stages}; pool made in {made:.0f} s)",
                flush=True,
            )
        del X


def extraction(n_images: int) -> None:
    import torch

    from ralif.extract import extract_features
    from ralif.models.encoders import ResNet18

    print(f"3. feature extraction, ResNet-18 (512 features) over {n_images:,} 32x32x3 images")

    class Features(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.net = ResNet18(in_channels=3)

        def forward(self, x):
            return self.net.features(x)

    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        for k in range(0, n_images, 10_000):
            m = min(10_000, n_images - k)
            imgs = rng.integers(0, 256, size=(m, 32, 32, 3), dtype=np.uint8)
            np.save(os.path.join(tmp, f"img-{k // 10_000:04d}.npy"), imgs)
        for device in ("cuda", "cpu"):
            rows = n_images if device == "cuda" else min(n_images, 2_000)
            images = sorted(os.path.join(tmp, f) for f in os.listdir(tmp) if f.startswith("img"))
            if device == "cpu":
                first = np.load(images[0])[:rows]
                np.save(os.path.join(tmp, "cpu.npy"), first)
                images = [os.path.join(tmp, "cpu.npy")]
            out = os.path.join(tmp, f"feat-{device}")
            t = time.perf_counter()
            extract_features(Features(), images, out, device=device, batch_size=512, quiet=True)
            took = time.perf_counter() - t
            print(f"   {device:<5} {rows / took:10,.0f} images/s ({rows:,} images, {took:.1f} s)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000000,10000000", help="pool sizes for the timing")
    ap.add_argument("--images", type=int, default=100_000)
    args = ap.parse_args()
    import torch

    print(f"torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}")
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check")
        return 1
    print(f"device: {torch.cuda.get_device_name(0)}; CPU threads: {torch.get_num_threads()}")
    ok = agreement()
    speed([int(s) for s in args.sizes.split(",") if s.strip()])
    extraction(args.images)
    print(
        "CUDA agrees with the CPU (scores to 1e-5; top-k picks identical)"
        if ok
        else "CUDA DISAGREES WITH THE CPU"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
