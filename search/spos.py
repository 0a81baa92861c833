"""``python -m search.spos --config cifar_spos.yaml``: SPOS architecture search (the CLI lives in ``search.cli``;
this entry always runs strategy ``spos``, whatever the config says)."""
from search.cli import run_strategy

if __name__ == "__main__":
    raise SystemExit(run_strategy("spos"))
