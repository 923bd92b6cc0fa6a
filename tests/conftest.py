"""Shared test settings."""

import os

import torch

# One intra-op thread per test process: tiny models gain nothing from more, and
# oversubscribed threads on a shared 2-core machine slow everything down sharply.
torch.set_num_threads(int(os.environ.get("DIFFROB_TEST_THREADS", "1")))
