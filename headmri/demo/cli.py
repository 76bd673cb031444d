"""``headmri-demo``: write a synthetic demo cohort (BIDS) with planted group effects.

    headmri-demo --out DIR --seed N --sizes HC=8,migraine=8,APTH=8,PPTH=8 [--effects TSV]

Progress goes to stderr, one line per subject.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from headmri.config import DemoConfig
from headmri.errors import HeadmriError

DEFAULT_EFFECTS = Path(__file__).resolve().parents[2] / "resources" / "demo_effects.tsv"


def parse_sizes(text: str) -> dict[str, int]:
    """'HC=8,migraine=8' -> {'HC': 8, 'migraine': 8} (order kept: it orders participants.tsv; labels are
    per group, hc001.. and migraine001..)."""
    sizes: dict[str, int] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        group, sep, count = item.partition("=")
        if not sep or not group.strip() or not count.strip().isdigit() or int(count) < 1:
            raise argparse.ArgumentTypeError(f"expected GROUP=N with N >= 1, got {item!r}")
        if not group.strip().isalnum():
            raise argparse.ArgumentTypeError(f"group names are letters and digits only, got {group!r}")
        sizes[group.strip()] = int(count)
    if not sizes:
        raise argparse.ArgumentTypeError("no group sizes given")
    return sizes


def parse_voxel(text: str) -> tuple[float, float, float]:
    parts = [float(p) for p in text.split(",")]
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"expected three sizes like 1,1,1.25, got {text!r}")
    return tuple(parts)  # type: ignore[return-value]


def build_parser() -> argparse.ArgumentParser:
    defaults = DemoConfig()
    parser = argparse.ArgumentParser(prog="headmri-demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="BIDS folder to write")
    parser.add_argument("--seed", type=int, default=defaults.seed, help=f"random seed (default {defaults.seed})")
    parser.add_argument(
        "--sizes",
        type=parse_sizes,
        default=dict(defaults.group_sizes),
        help="subjects per group, e.g. HC=8,migraine=8,APTH=8,PPTH=8 (groups without effects are controls)",
    )
    parser.add_argument("--effects", type=Path, default=DEFAULT_EFFECTS, help="planted effects table (TSV)")
    parser.add_argument("--voxel", type=parse_voxel, default=(1.0, 1.0, 1.25), help="native voxel size in mm")
    parser.add_argument("--orientation", default="LIA", help="native orientation code (default LIA)")
    parser.add_argument("--threads", type=int, default=1, help="subjects made in parallel")
    parser.add_argument("--atlas", type=Path, default=None, help="embedded atlas file (built in memory if omitted)")
    parser.add_argument("--restore-brain-mean", action="store_true",
                        help="patients' brains keep the controls' mean intensity: only the planted regions differ")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    from headmri.demo.cohort import make_demo_cohort
    from headmri.demo.effects import read_effects

    try:
        participants = make_demo_cohort(
            args.out,
            group_sizes=args.sizes,
            seed=args.seed,
            effects=read_effects(args.effects),
            native_voxel_mm=args.voxel,
            orientation=args.orientation,
            threads=args.threads,
            atlas=args.atlas,
            restore_brain_mean=args.restore_brain_mean,
        )
    except HeadmriError as exc:
        print(f"headmri-demo: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {len(participants)} subjects to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
