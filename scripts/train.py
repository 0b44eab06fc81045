#!/usr/bin/env python
"""Launch script: the same as `actorlearner train ...` (try `python scripts/train.py --help`)."""

import sys

from actorlearner.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
