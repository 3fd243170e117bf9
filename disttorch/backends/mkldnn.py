"""torch.backends.mkldnn: oneDNN kernels; disttorch has none (the ``enabled`` flag is recorded)."""

enabled = True


def is_available() -> bool:
    return False
