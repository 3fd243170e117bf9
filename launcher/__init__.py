"""disttorch-run: starts and supervises the worker processes of a disttorch job.

Imports nothing of the tensor stack, so it starts fast and survives a broken worker.
"""
