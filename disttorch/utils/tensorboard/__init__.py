"""torch.utils.tensorboard: ``SummaryWriter`` writing real TensorBoard event files.

The event files are written by tensorboardX (a maintained writer that needs no PyTorch); disttorch
tensors are handed to it as NumPy arrays. ``add_graph`` records the model's module-level dataflow
from one forward pass (see ``_graph.py``). Install with ``pip install tensorboardX`` (the
``tensorboard`` extra).
"""
from .writer import SummaryWriter

__all__ = ["SummaryWriter"]
