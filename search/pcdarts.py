"""``python -m search.pcdarts --config cifar_pcdarts.yaml``: PC-DARTS architecture search (the CLI lives in ``search.cli``;
this entry always runs strategy ``pcdarts``, whatever the config says)."""
import sys

from search.cli import main

if __name__ == "__main__":
    raise SystemExit(main([*sys.argv[1:], "--model.strategy", "pcdarts"], prog="python -m search.pcdarts"))
