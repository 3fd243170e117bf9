"""torch.backends.cpu: the CPU's SIMD level as PyTorch names it."""


def get_cpu_capability() -> str:
    """NumPy's widest enabled x86 SIMD extension in PyTorch's words ("AVX512", "AVX2" or "DEFAULT")."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as feats
    except ImportError:  # NumPy 1.x
        from numpy.core._multiarray_umath import __cpu_features__ as feats
    if feats.get("AVX512F"):
        return "AVX512"
    if feats.get("AVX2"):
        return "AVX2"
    return "DEFAULT"
