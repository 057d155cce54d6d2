"""``ralif embed-text``: embed a CSV of texts with the offline MiniLM sentence encoder, as an
.npz ready for select and bench; a stopped run resumes."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ralif._validation import RalifInputError
from ralif.io import check_output, save_npz

NAME = "embed-text"


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``embed-text`` command and its options.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        The subcommands of the ``ralif`` parser.

    Returns
    -------
    argparse.ArgumentParser
        The parser of ``embed-text``.
    """
    embed = subparsers.add_parser(
        NAME,
        help="embed a CSV of texts with the offline MiniLM sentence encoder",
        description="Write an .npz with X (384-d embeddings, one row per CSV row) and, "
        "with --label-column, y (-1 where the label is empty) and, when the labels are names, "
        "classes (the name of each class id), ready for select and bench. Progress is kept in "
        "OUT.partial, so a stopped run resumes when started again.",
    )
    embed.add_argument("--csv", required=True, help="CSV file with a header row")
    embed.add_argument(
        "--text-column", default="text", help="column holding the texts (default text)"
    )
    embed.add_argument(
        "--label-column",
        default=None,
        help="column holding the labels (class ids or class names), if any",
    )
    embed.add_argument("--device", default="auto", help="auto, cpu or cuda")
    embed.add_argument("--out", required=True, help="output .npz")
    embed.add_argument("--quiet", action="store_true", help="no progress bar")
    return embed


def _read_texts(args: argparse.Namespace) -> tuple[list[str], dict]:
    """The texts of the CSV, and the arrays besides ``X`` (``y``, ``classes``) of its
    labels; all checked before the embedding, which can take many minutes."""
    from ralif.io import labels_from_cells, read_csv_records

    wanted = [c for c in (args.text_column, args.label_column) if c]
    records = read_csv_records(args.csv, "texts", wanted)
    if not records:
        raise RalifInputError(f"texts file {args.csv} has a header but no rows below it")
    short = [line for line, r in records if r.get(args.text_column) is None]
    if short:
        raise RalifInputError(
            f"{args.csv}: lines {', '.join(map(str, short[:10]))} have no {args.text_column!r} cell"
        )
    arrays = {}
    if args.label_column:
        arrays["y"], classes = labels_from_cells(
            [r.get(args.label_column) for _, r in records],
            f"labels ({args.csv}, column {args.label_column!r})",
        )
        if classes is not None:
            arrays["classes"] = classes
    return [r[args.text_column] for _, r in records], arrays


def run(args: argparse.Namespace) -> int:
    """Run ``ralif embed-text``: write the embeddings (and labels) to ``--out``.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed command line.

    Returns
    -------
    int
        The exit code, 0.
    """
    from ralif.models.text import embed_texts, remove_progress

    texts, arrays = _read_texts(args)
    check_output(args.out, "embeddings")
    # Progress is saved beside a file output, so that a run stopped halfway resumes.
    target = Path(os.path.realpath(args.out))
    regular = args.out != "-" and (target.is_file() or not target.exists())
    resume = f"{target}.partial" if regular else None
    X = embed_texts(texts, device=args.device, quiet=args.quiet, resume_dir=resume)
    save_npz(args.out, {"X": X, **arrays}, "embeddings")
    if resume is not None:
        remove_progress(resume)
    if not args.quiet:
        named = f", classes {', '.join(arrays['classes'])}" if "classes" in arrays else ""
        print(
            f"wrote {X.shape[0]} embeddings of {X.shape[1]} dimensions to {args.out}{named}",
            file=sys.stderr,
        )
    return 0
