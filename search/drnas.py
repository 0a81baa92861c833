"""``python -m search.drnas --config nb201_drnas.yaml``: DrNAS architecture search (the CLI lives in ``search.cli``;
this entry always runs strategy ``drnas``, whatever the config says)."""
import sys

from search.cli import main

if __name__ == "__main__":
    raise SystemExit(main([*sys.argv[1:], "--model.strategy", "drnas"], prog="python -m search.drnas"))
