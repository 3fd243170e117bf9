"""torch.backends.mkl: whether disttorch's float matrix products run on Intel oneMKL.

They do when the ``mkl`` wheel is installed (``pip install disttorch[mkl]``) and ``DISTTORCH_BLAS``
is not ``numpy``; otherwise NumPy's own BLAS (usually OpenBLAS) computes them. See ``disttorch/_gemm.py``.
"""


def is_available() -> bool:
    """True when float32 / float64 products go to MKL's GEMM."""
    from .._gemm import mkl_available

    return mkl_available()
