"""``python -m retrain --config retrain_cifar.yaml --genotype DARTS_V2`` (see ``retrain.cli``)."""
import sys

from retrain.cli import main

sys.exit(main())
