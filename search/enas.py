"""``python -m search.enas --config cifar_enas.yaml``: ENAS architecture search (the CLI lives in ``search.cli``;
this entry always runs strategy ``enas``, whatever the config says)."""
import sys

from search.cli import main

if __name__ == "__main__":
    raise SystemExit(main([*sys.argv[1:], "--model.strategy", "enas"], prog="python -m search.enas"))
