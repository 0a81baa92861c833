"""``python -m search.darts --config cifar.yaml``: DARTS architecture search (the CLI lives in ``search.cli``)."""
from search.cli import main

if __name__ == "__main__":
    raise SystemExit(main(prog="python -m search.darts"))
