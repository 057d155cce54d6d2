"""Throughput of the encoders: feature extraction (items/s) and one training epoch.

Run:  OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_encoders.py [--device cpu|cuda]

Fashion-MNIST images (1 x 28 x 28). Extraction: 10,000 images, batch 512, eval mode.
Training: one epoch over 1,000 labeled images, batch 64, with augmentation (and bfloat16
autocast on CUDA). Medians of --repeats runs after one warm-up.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OMP_NUM_THREADS", "2")

import statistics
import time

import torch

from ralif.data import load_images
from ralif.models import TrainConfig, extract_features, make_encoder, train_classifier
from ralif.models.devices import resolve_device


def timed(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--device", default="auto")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--encoders", default="cnn,resnet18")
    ap.add_argument("--extract", type=int, default=10_000)
    args = ap.parse_args()
    device = resolve_device(args.device)
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    X, y, _, _ = load_images("fashion-mnist")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(
        f"device: {device} ({name}); torch threads {torch.get_num_threads()}; median of {args.repeats}"
    )
    print("| encoder | extraction (items/s) | one epoch, 1,000 images (s) |")
    print("|---|---|---|")
    for enc in args.encoders.split(","):
        model = make_encoder(enc, 1, 10)
        items = X[: args.extract]
        config = TrainConfig(epochs=1, min_steps=0, device=str(device))

        def extract(m=model, imgs=items):
            return extract_features(m, imgs, device=device)

        def epoch(e=enc, c=config):
            return train_classifier(make_encoder(e, 1, 10), X[:1000], y[:1000], c)

        t_ext = timed(extract, args.repeats)
        t_epoch = timed(epoch, args.repeats)
        print(f"| {enc} | {len(items) / t_ext:,.0f} | {t_epoch:.2f} |", flush=True)


if __name__ == "__main__":
    main()
