"""Build the tiny local mBART stand-in (tests, CPU demo) from the synthetic corpus texts.

    python scripts/build_tiny_mbart.py --out runs/tiny_mbart

Load it anywhere a model name is expected: ``text.name_or_path=runs/tiny_mbart``.
"""

from __future__ import annotations

import argparse

from slp.synthetic import SyntheticConfig, corpus_texts
from slp.text.tiny import build_tiny_mbart


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="directory to write the model and tokenizer to")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = build_tiny_mbart(args.out, corpus_texts(SyntheticConfig()), seed=args.seed)
    print(f"tiny mBART written to {out}")


if __name__ == "__main__":
    main()
