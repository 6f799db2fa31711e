"""Keep a CV run's held-out outputs without its networks: the figures of a card, recomputable.

A fold checkpoint (``train tumour --checkpoint-dir``) holds the fold's held-out logits, OOD scores
and the networks (float16, ~7 MB a fold). The outputs alone are ~30 KB a fold and are all that the
report, the calibration, the metadata and record comparisons and every type rule read, so
``train tumour … --no-final --checkpoint-dir models/tumour/held-out`` recomputes the shipped
recipe's CV figures in seconds, without two hours of training. Benchmarks that run a fold's own
network on new inputs (``bench/crop_scale.py``, ``bench/steadiness_folds.py``) still need the full
checkpoints and say so.

Usage: ``python -m models.tumour.held_out FROM_DIR TO_DIR``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

KEPT = ("test", "logits", "ood")


def keep_outputs(source: Path, target: Path) -> list[Path]:
    """Each ``tumour-cv-*.pt`` in ``source`` written to ``target`` under its own name, outputs only."""
    written = []
    target.mkdir(parents=True, exist_ok=True)
    for path in sorted(source.glob("tumour-cv-*.pt")):
        saved = torch.load(path, map_location="cpu", weights_only=True)
        out = target / path.name
        torch.save({key: saved[key].clone() for key in KEPT}, out)
        written.append(out)
    return written


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        sys.stderr.write("usage: python -m models.tumour.held_out FROM_DIR TO_DIR\n")
        return 2
    written = keep_outputs(Path(argv[0]), Path(argv[1]))
    if not written:
        sys.stderr.write(f"no tumour-cv-*.pt fold checkpoints in {argv[0]}\n")
        return 1
    for path in written:
        sys.stdout.write(f"{path} ({path.stat().st_size} bytes)\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
