"""Test-session settings shared by every test module."""

import os

import torch

# `make test` runs two pytest-xdist workers on a 2-core machine: one intra-op thread each.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)
