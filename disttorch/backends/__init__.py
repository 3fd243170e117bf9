"""torch.backends: switches PyTorch code sets for its kernels (cudnn, mps, cuda.matmul, ...).

disttorch has no cuDNN, MPS or oneDNN kernels of its own, so the flags are kept (readable and
writable with PyTorch's defaults) and the availability queries answer truthfully.
"""
from . import cpu, cuda, cudnn, mkl, mkldnn, mps, openmp

__all__ = ["cpu", "cuda", "cudnn", "mkl", "mkldnn", "mps", "openmp"]
