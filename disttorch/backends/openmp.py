"""torch.backends.openmp: whether the BLAS runs OpenMP threads (threadpoolctl's view)."""


def is_available() -> bool:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return False
    return any(p.get("user_api") == "openmp" for p in threadpool_info())
