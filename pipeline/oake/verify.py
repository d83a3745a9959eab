"""Check final OAKE shards (the reference's ``auto_fix``, done once over the cache instead of per file).

For every shard: readable, rows finite and unit-norm within fp16 tolerance, CSR offsets consistent, image ids equal
to the shard's share of the annotation file (``--shards``; the index comes from ``shard-{i:03d}.h5``; with
``--dry-run-cache`` the share of the dry-run image set, :mod:`pipeline.core.dry_run`). Bad shards are listed; with
``--fix`` they are removed so that the next ``snakemake`` run rebuilds exactly those.

``python -m pipeline.oake.verify --annotations A --shards N results/oake/demo/objects/val/shard-*.h5 [--fix]``
"""

from __future__ import annotations

import argparse
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.core import atomic, cli, images
from pipeline.core import dry_run as dry
from pipeline.core.options import add_arguments, from_args, option
from pipeline.formats import feature_cache as cache

log = logging.getLogger(__name__)
SHARD_NAME = re.compile(r"shard-(\d+)\.h5$")


def check(
    shards: Sequence[Path], annotations: Path | None, num_shards: int | None, dry_run: bool = False
) -> dict[Path, list[str]]:
    """Problems per shard path (only bad shards are in the result). The ids of a shard are compared with its share
    of ``annotations`` (given ``num_shards``); with ``dry_run``, with its share of the dry-run image set.

    Raises:
        ValueError: ``annotations`` is unreadable or has no ``images`` list of records with ids (names the file).
    """
    all_ids, kept = None, None
    if annotations is not None:
        records = images.image_records(annotations)
        all_ids = [int(im["id"]) for im in records]
        kept = set(dry.record_ids(records)) if dry_run else None
    bad: dict[Path, list[str]] = {}
    for path in shards:
        expected = None
        match = SHARD_NAME.search(path.name)
        if all_ids is not None and num_shards and match:
            expected = cache.shard_image_ids(all_ids, num_shards, int(match.group(1)))
            expected = expected if kept is None else [i for i in expected if i in kept]
        problems = cache.verify_shard(path, expected)
        if problems:
            bad[path] = problems
    return bad


@dataclass(frozen=True, kw_only=True)
class VerifyOptions:
    """The shards to check (the positional arguments) and how."""

    shards: tuple[Path, ...] = field(metadata={})  # positional: added by build_parser, not an option
    annotations: Path | None = option(None, help="the annotation file the shards were made from")
    num_shards: int | None = option(None, help="number of shards of the split", flag="--shards")
    dry_run_cache: bool = option(
        False,
        help="shards were made with dry_run (ids compared with the shard's share of the dry-run set)",
        action="store_true",
    )
    fix: bool = option(False, help="remove bad shards so that they are rebuilt", action="store_true")
    report: Path | None = option(None, help="write the result as JSON (output)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pipeline.oake.verify", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("shards", type=Path, nargs="+", help="final shard files (inputs)")
    add_arguments(p, VerifyOptions)
    cli.add_log_argument(p)
    return p


def run(opts: VerifyOptions) -> dict:
    bad = check(opts.shards, opts.annotations, opts.num_shards, opts.dry_run_cache)
    for path, problems in bad.items():
        log.error("BAD %s: %s", path, "; ".join(problems[:5]))
        if opts.fix:
            path.unlink(missing_ok=True)
            log.warning("removed %s: the next run rebuilds it", path)
    log.info("%d shard(s) checked, %d bad", len(opts.shards), len(bad))
    result = {"checked": [str(s) for s in opts.shards], "bad": {str(k): v for k, v in bad.items()}}
    if opts.report:
        atomic.write_json(opts.report, result, compact=False)
    if bad and not opts.fix:
        raise ValueError(f"{len(bad)} bad shard(s): {', '.join(str(b) for b in bad)} (rerun with --fix to rebuild)")
    return result


def main(argv: Sequence[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    cli.setup_logging(args.log, args.verbose)
    return run(from_args(VerifyOptions, args, shards=tuple(args.shards)))


if __name__ == "__main__":
    raise SystemExit(cli.run_main(main))
