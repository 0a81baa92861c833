"""``python -m search.gdas --config cifar_gdas.yaml``: GDAS architecture search (the CLI lives in ``search.cli``;
this entry always runs strategy ``gdas``, whatever the config says)."""
import sys

from search.cli import main

if __name__ == "__main__":
    raise SystemExit(main([*sys.argv[1:], "--model.strategy", "gdas"], prog="python -m search.gdas"))
