"""Command line: python -m emo_model.train --config FILE [--set key=value ...] [--resume auto|PATH]."""
from __future__ import annotations

import argparse
import logging
import sys

from ..errors import EMOError
from .config import TrainConfig
from .trainer import train


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emo_model.train", description="Train one EMO stage.")
    parser.add_argument("--config", required=True, help="training config JSON (configs/train/stage*_*.json)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config entry; VALUE is JSON (else a string). Repeatable.")
    parser.add_argument("--resume", metavar="auto|PATH",
                        help="continue from the newest checkpoint in output_dir (auto) or from a step_* folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    try:
        final = train(TrainConfig.from_file(args.config, args.set), resume=args.resume)
    except EMOError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"trained model: {final}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
