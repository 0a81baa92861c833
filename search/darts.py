"""``python -m search.darts --config cifar.yaml``: DARTS architecture search (the CLI lives in ``search.cli``;
this entry always runs strategy ``darts``, whatever the config says)."""
from search.cli import run_strategy

if __name__ == "__main__":
    raise SystemExit(run_strategy("darts"))
