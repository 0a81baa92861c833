"""``python -m search.spos --config cifar_spos.yaml``: SPOS (single-path one-shot) architecture search (the CLI
lives in ``search.cli``; this entry always runs strategy ``spos``, whatever the config says)."""
import sys

from search.cli import main

if __name__ == "__main__":
    raise SystemExit(main([*sys.argv[1:], "--model.strategy", "spos"], prog="python -m search.spos"))
