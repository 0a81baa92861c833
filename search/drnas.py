"""``python -m search.drnas --config nb201_drnas.yaml``: DrNAS architecture search (the CLI lives in ``search.cli``;
this entry always runs strategy ``drnas``, whatever the config says)."""
from search.cli import run_strategy

if __name__ == "__main__":
    raise SystemExit(run_strategy("drnas"))
