"""nanogpt2.publishing: what leaves the run: the model card and uploads to the Hugging Face Hub.

Takes plain values (folders, dicts); never imports training.
"""

from .hub import HubPublisher, Upload
from .model_card import render_model_card

__all__ = ["HubPublisher", "Upload", "render_model_card"]
