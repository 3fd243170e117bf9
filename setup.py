"""Packaging beyond pyproject.toml: the launcher's source folder is ``launcher/``, but it installs as
the package ``disttorch_launcher``, so it cannot collide with another distribution's top-level
``launcher`` (pyproject's package discovery cannot rename a folder, hence this file)."""
from setuptools import find_packages, setup

LAUNCHER = ["disttorch_launcher"] + [f"disttorch_launcher.{sub}" for sub in find_packages("launcher")]

setup(packages=find_packages(include=["disttorch", "disttorch.*"]) + LAUNCHER,
      package_dir={"disttorch_launcher": "launcher"})
