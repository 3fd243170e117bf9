"""disttorch.linalg: the subset of torch.linalg the issues name."""
from .ops.linalg import det, inv, linalg_norm as norm, matrix_norm, solve  # noqa: F401
from .ops.reduce import vector_norm  # noqa: F401
