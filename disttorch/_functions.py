"""Former name of ``disttorch/_torch_api.py``, kept only while branches written against it merge."""
from ._torch_api import *  # noqa: F401,F403
