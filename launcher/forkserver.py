"""Start workers by forking a pre-imported template instead of starting fresh interpreters.

A fresh worker spends most of its start importing NumPy and disttorch; with dozens of simulated
ranks on one machine that is most of the job. `ForkServer` starts one template process
(`_forkserver_template.py`, which imports the tensor stack: the launcher itself never does) and
asks it, over a private unix socket pair, to fork each worker with its own arguments,
environment, working directory and stdin/stdout/stderr descriptors. The template double-forks,
so every worker becomes a child of this launcher (a child subreaper): `ForkedProcess` then waits
for it, and the launcher signals its process group, exactly as for a spawned worker.

`worker_starter` decides per job whether the fork server is used: Linux with a working subreaper,
not `--start-method spawn`, not `--no-python`, no GPU (a forked CUDA context is unusable), and a
template that really runs a single thread after its imports. Anything else spawns as before.
"""
from __future__ import annotations

import atexit
import json
import os
import socket
import struct
import subprocess
import sys
import threading

__all__ = ["ForkServer", "ForkedProcess", "ForkServerError", "START_METHODS",
           "fork_server_for", "shutdown_fork_server"]

TEMPLATE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_forkserver_template.py")
START_METHODS = ("forkserver", "fork", "spawn")  # torchrun's names; fork means the fork server
_HEADER = struct.Struct("!I")
_READY_TIMEOUT = 120.0  # seconds the template may take to import the stack on a loaded machine
_REPLY_TIMEOUT = 60.0
# Variables the template's imports read: a worker whose value differs must not be forked from it.
_IMPORT_TIME_VARS = ("PYTHONPATH", "PYTHONHOME", "PYTHONSAFEPATH", "CUDA_VISIBLE_DEVICES")
# The template loads BLAS with one thread (a BLAS pool is threads, which a fork would not copy);
# each worker then sizes its pool from its own OMP_NUM_THREADS.
_SINGLE_THREADED = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


class ForkServerError(RuntimeError):
    """The template could not be started, or could not fork a worker."""


class ForkedProcess:
    """A worker forked by the template: the parts of `subprocess.Popen` the launcher uses."""

    def __init__(self, pid: int, stdout, stderr) -> None:
        self.pid = pid
        self.stdout = stdout
        self.stderr = stderr
        self.returncode: int | None = None
        self._lock = threading.Lock()
        self._done = threading.Event()

    def _set(self, status: int) -> int:
        self.returncode = os.waitstatus_to_exitcode(status)
        self._done.set()
        return self.returncode

    def poll(self) -> int | None:
        if self.returncode is None and self._lock.acquire(blocking=False):
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
                if pid:
                    self._set(status)
            except ChildProcessError:
                pass
            finally:
                self._lock.release()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is not None:
            return self.returncode
        if self._lock.acquire(blocking=False):  # only one thread blocks in waitpid
            try:
                if self.returncode is None:
                    _pid, status = os.waitpid(self.pid, 0)
                    return self._set(status)
            finally:
                self._lock.release()
        if not self._done.wait(timeout):
            raise subprocess.TimeoutExpired(str(self.pid), timeout)
        return self.returncode


class ForkServer:
    """One template process, started with `env`, forking workers on request."""

    def __init__(self, python: str, env: dict[str, str]) -> None:
        self.env_key = _import_key(env)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.proc = subprocess.Popen(
                [python, TEMPLATE, str(theirs.fileno()), str(os.getpid())], env=env,
                stdin=subprocess.DEVNULL, pass_fds=(theirs.fileno(),), start_new_session=True)
        except OSError as exc:
            ours.close()
            raise ForkServerError(f"cannot start the fork server: {exc}") from exc
        finally:
            theirs.close()
        self._sock = ours
        self._lock = threading.Lock()
        try:
            ready = self._receive(_READY_TIMEOUT)
        except ForkServerError:
            self.close()
            raise
        if ready.get("threads") != 1:
            self.close()
            raise ForkServerError(f"the template runs {ready.get('threads')} threads after its "
                                  "imports; forking it would not be safe")
        self.imported = ready.get("imported", [])

    @property
    def pid(self) -> int:
        return self.proc.pid

    def fork(self, args: list[str], env: dict[str, str], cwd: str) -> ForkedProcess:
        """Fork one worker running `_bootstrap.py args`; its stdout/stderr come back as pipes."""
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        null = os.open(os.devnull, os.O_RDONLY)
        try:
            request = json.dumps({"args": list(args), "env": dict(env), "cwd": cwd,
                                  "launcher_pid": os.getpid()}).encode()
            with self._lock:
                try:
                    socket.send_fds(self._sock, [_HEADER.pack(len(request)) + request],
                                    [null, out_w, err_w])
                except OSError as exc:
                    raise ForkServerError(f"the fork server is gone: {exc}") from exc
                reply = self._receive(_REPLY_TIMEOUT)
        except BaseException:
            os.close(out_r)
            os.close(err_r)
            raise
        finally:
            for fd in (null, out_w, err_w):
                os.close(fd)
        if "pid" not in reply:
            os.close(out_r)
            os.close(err_r)
            raise ForkServerError(f"the fork server could not fork: {reply.get('error')}")
        return ForkedProcess(int(reply["pid"]), os.fdopen(out_r, "rb", buffering=0),
                             os.fdopen(err_r, "rb", buffering=0))

    def suits(self, env: dict[str, str]) -> bool:
        """Whether a worker with this environment is what the template's imports assumed."""
        return _import_key(env) == self.env_key

    def close(self) -> None:
        """Close the socket (the template exits on it) and reap the template."""
        try:
            self._sock.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def _receive(self, timeout: float) -> dict:
        self._sock.settimeout(timeout)
        data = b""
        try:
            while len(data) < _HEADER.size or len(data) < _HEADER.size + _HEADER.unpack_from(data)[0]:
                chunk = self._sock.recv(1 << 16)
                if not chunk:
                    raise ForkServerError("the fork server exited (see its messages above)")
                data += chunk
        except (socket.timeout, OSError) as exc:
            if isinstance(exc, ForkServerError):
                raise
            raise ForkServerError(f"no answer from the fork server: {exc}") from exc
        finally:
            self._sock.settimeout(None)
        return json.loads(data[_HEADER.size:])


def _import_key(env: dict[str, str]) -> tuple:
    return tuple(env.get(name) for name in _IMPORT_TIME_VARS)


_server: ForkServer | None = None


def fork_server_for(python: str, env: dict[str, str]) -> ForkServer:
    """This launcher's fork server for workers with environment `env` (kept across attempts;
    replaced when the import-time variables differ)."""
    global _server
    if _server is not None and (not _server.suits(env) or _server.proc.poll() is not None):
        shutdown_fork_server()
    if _server is None:
        base = dict(os.environ)
        for name in _IMPORT_TIME_VARS:
            if env.get(name) is None:
                base.pop(name, None)
            else:
                base[name] = env[name]
        base.update(_SINGLE_THREADED)
        _server = ForkServer(python, base)
        atexit.register(shutdown_fork_server)  # every path out of the launcher stops it
    return _server


def shutdown_fork_server() -> None:
    """Stop the template, if one runs (the launcher calls this when its job ends)."""
    global _server
    server, _server = _server, None
    if server is not None:
        server.close()


def fork_supported() -> bool:
    return sys.platform.startswith("linux") and hasattr(socket, "send_fds")
