"""``python -m search.pcdarts --config cifar_pcdarts.yaml``: PC-DARTS architecture search (the CLI lives in ``search.cli``;
this entry always runs strategy ``pcdarts``, whatever the config says)."""
from search.cli import run_strategy

if __name__ == "__main__":
    raise SystemExit(run_strategy("pcdarts"))
