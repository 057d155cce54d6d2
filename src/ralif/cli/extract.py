"""``ralif extract``: features of sharded images from an encoder, written as resumable .npy
shards (a pool for select, session and bench)."""

from __future__ import annotations

import argparse
import sys

from ralif._validation import RalifInputError

NAME = "extract"


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``extract`` command and its options.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        The subcommands of the ``ralif`` parser.

    Returns
    -------
    argparse.ArgumentParser
        The parser of ``extract``.
    """
    ext = subparsers.add_parser(
        NAME,
        help="features of sharded images from an encoder, written as .npy shards (a pool)",
        description="Run an encoder over .npy image shards and write its features as .npy shards "
        "into OUT, a pool for select, session and bench. Each shard is written whole, so a "
        "stopped run resumes where it stopped when the same command is run again.",
    )
    ext.add_argument(
        "--images",
        required=True,
        help="image shards: a .npy file, a folder or a quoted glob ('images/*.npy') of arrays "
        "(n, H, W), (n, H, W, C) or (n, C, H, W); integers are scaled to [0, 1]",
    )
    ext.add_argument("--out", required=True, help="folder for the feature shards")
    ext.add_argument(
        "--encoder",
        required=True,
        help="cnn or resnet18 (ralif's encoders: their feature vector), or package.module:attr "
        "naming a torch.nn.Module, or a callable returning one, whose output (one tensor) is "
        "the features; a module in the current folder needs PYTHONPATH=.",
    )
    ext.add_argument(
        "--weights",
        default=None,
        help="state dict saved with torch.save (read with weights_only=True); without it "
        "the encoder keeps its initial weights, drawn with seed 0",
    )
    ext.add_argument("--batch-size", type=int, default=256, help="images per batch (default 256)")
    ext.add_argument(
        "--shard-rows", type=int, default=50_000, help="rows per feature shard (default 50000)"
    )
    ext.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (default auto)")
    ext.add_argument("--quiet", action="store_true", help="no progress bar")
    return ext


def run(args: argparse.Namespace) -> int:
    """Run ``ralif extract``: write the feature shards into ``--out``.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed command line.

    Returns
    -------
    int
        The exit code, 0.
    """
    try:
        import torch  # noqa: F401
    except ImportError:
        raise RalifInputError("ralif extract needs torch: pip install 'ralif[torch]'") from None
    from ralif.extract import _EncoderFailure, extract_features, image_channels, load_encoder

    encoder = load_encoder(args.encoder, image_channels(args.images), args.weights)
    try:
        paths = extract_features(
            encoder,
            args.images,
            args.out,
            shard_rows=args.shard_rows,
            batch_size=args.batch_size,
            device=args.device,
            quiet=args.quiet,
        )
    except _EncoderFailure as exc:  # raised or exited in its forward: named as given here
        raise RalifInputError(
            f"the encoder {args.encoder} failed on the images: {exc.reason}"
        ) from None
    except RuntimeError as exc:  # torch's errors outside the forward (moving it to a device)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RalifInputError(f"the encoder {args.encoder} failed on the images: {first}") from None
    if not args.quiet:
        from ralif.pools.sources import open_pool

        pool = open_pool(args.out)
        print(
            f"wrote {pool.n_rows} feature rows of {pool.n_features} dimensions in {len(paths)} "
            f"shards to {args.out}",
            file=sys.stderr,
        )
    return 0
