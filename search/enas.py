"""``python -m search.enas --config cifar_enas.yaml``: ENAS architecture search (the CLI lives in ``search.cli``;
this entry always runs strategy ``enas``, whatever the config says)."""
from search.cli import run_strategy

if __name__ == "__main__":
    raise SystemExit(run_strategy("enas"))
