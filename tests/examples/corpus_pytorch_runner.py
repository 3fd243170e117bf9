"""Runs a corpus program with the real PyTorch and torchvision (the reference side of
test_corpus.py): ``python corpus_pytorch_runner.py PROGRAM.py [ARGS...]``.

It differs from ``python PROGRAM.py`` in one way: torchvision is imported through
tests/vision/torchvision_reference.py, which copes with a torchvision wheel whose C extension
does not match the installed CPU torch (the models, utils, datasets and transforms are pure
Python and do not need it).
"""
import os
import pathlib
import runpy
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "vision"))
from torchvision_reference import load_torchvision

if load_torchvision() is None:
    sys.exit("torchvision is not installed")
import torchvision

for name in ("datasets", "transforms"):
    setattr(torchvision, name, __import__(f"torchvision.{name}", fromlist=["_"]))

program = sys.argv[1]
sys.argv = sys.argv[1:]
sys.path.insert(0, os.path.dirname(os.path.abspath(program)))
runpy.run_path(program, run_name="__main__")
