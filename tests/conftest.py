"""Test-session settings shared by every test module."""
import torch

# The tests run tiny networks, for which one intra-op thread is as fast as two on an idle machine and far
# faster on a busy one (two threads contending for two cores stall small kernels by 10x and more).
torch.set_num_threads(1)
