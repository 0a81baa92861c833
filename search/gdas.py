"""``python -m search.gdas --config cifar_gdas.yaml``: GDAS architecture search (the CLI lives in ``search.cli``;
this entry always runs strategy ``gdas``, whatever the config says)."""
from search.cli import run_strategy

if __name__ == "__main__":
    raise SystemExit(run_strategy("gdas"))
