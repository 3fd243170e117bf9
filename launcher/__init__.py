"""disttorch-run: starts and supervises the worker processes of a disttorch job.

Imports nothing of the tensor stack (nor NumPy), so it starts fast and survives a broken worker.
`python -m disttorch_launcher` and the `disttorch-run` console script run `disttorch_launcher.cli.main`.

Modules: cli (options), config (values, worker environment), local (spawn and supervise one
node), output (prefixed console lines, log files), report (the failure report), process and
signals (stopping process groups, the launcher's own signals), control / coordinator /
multinode (the launchers of several nodes), remote (host lists, hostfiles), schedulers (SLURM,
MPI), engines (local, ssh, Ray, Kubernetes), dryrun, and _bootstrap (runs inside each worker).
"""
