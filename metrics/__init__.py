"""Hugging Face `evaluate` modules shipped with nanogpt2 (`metrics/hellaswag`)."""
