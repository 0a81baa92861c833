"""``python -m search.evolution --config nb201_evolution.yaml --table PATH [--hp12_table PATH]``.

Runs the discrete strategy on NAS-Bench-201 by table lookup; ``--help`` lists every option.
"""
import sys

from search.discrete.cli import main

if __name__ == "__main__":
    sys.exit(main("evolution"))
