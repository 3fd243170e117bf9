"""`python -m disttorch_launcher ...` is `disttorch-run ...`."""
import sys

from .cli import main

sys.exit(main())
