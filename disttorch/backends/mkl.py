"""torch.backends.mkl: disttorch's BLAS is NumPy's (usually OpenBLAS), not MKL."""


def is_available() -> bool:
    return False
