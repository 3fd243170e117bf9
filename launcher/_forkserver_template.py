"""The fork server's template process: imports the tensor stack once, then forks workers.

    python launcher/_forkserver_template.py FD LAUNCHER_PID

The launcher (`launcher/forkserver.py`) starts this file as a plain script with one end of a unix
socket pair on descriptor FD. The template imports NumPy and disttorch (the seconds a worker
would otherwise spend), loads `_bootstrap.py`, freezes its objects out of the garbage collector
(so that children do not copy the pages a collection would touch), checks that it runs a single
thread, and says so. Then, for every request (a JSON record with the worker's bootstrap
arguments, environment and working directory, plus its stdin/stdout/stderr descriptors passed
with SCM_RIGHTS), it double-forks: the intermediate child forks the worker and exits, so the
worker is reparented to the launcher (a child subreaper) and the launcher waits for, signals
and reaps it by pid exactly like a worker it spawned. Only then does the template reply with
the worker's pid.

The socket pair is the only channel and only the launcher holds the other end; messages are
JSON, never pickles. The template dies with the launcher (PR_SET_PDEATHSIG) and exits when the
socket closes.
"""
import gc
import importlib.util
import json
import os
import signal
import socket
import struct
import sys
import time

_HEADER = struct.Struct("!I")
_MAX_MESSAGE = 16 << 20
_REPARENT_WAIT = 10.0  # seconds a new worker waits to be handed to the launcher
_BOOTSTRAP_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_bootstrap.py")


def _send(sock: socket.socket, record: dict) -> None:
    data = json.dumps(record).encode()
    sock.sendall(_HEADER.pack(len(data)) + data)


def _recv(sock: socket.socket):
    """(record, fds) of the next request; (None, []) when the launcher closed the socket."""
    data, fds, _flags, _addr = socket.recv_fds(sock, 1 << 16, 3)
    if not data:
        return None, fds
    while len(data) < _HEADER.size:
        more = sock.recv(1 << 16)
        if not more:
            return None, fds
        data += more
    (size,) = _HEADER.unpack_from(data)
    if size > _MAX_MESSAGE:
        raise ValueError(f"fork server request of {size} bytes")
    while len(data) < _HEADER.size + size:
        more = sock.recv(1 << 16)
        if not more:
            return None, fds
        data += more
    return json.loads(data[_HEADER.size:_HEADER.size + size]), fds


def _load_bootstrap():
    spec = importlib.util.spec_from_file_location("_disttorch_bootstrap", _BOOTSTRAP_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _preimport() -> list:
    """Import what every worker would: NumPy and disttorch (with nn, optim, distributed)."""
    done = []
    for name in ("numpy", "disttorch", "disttorch.nn", "disttorch.optim", "disttorch.distributed",
                 "disttorch.utils.data"):
        try:
            importlib.import_module(name)
            done.append(name)
        except Exception as exc:  # noqa: BLE001 - a worker without it imports (and fails) itself
            sys.stderr.write(f"disttorch fork server: cannot preimport {name}: {exc}\n")
    return done


def _thread_count() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        import threading
        return threading.active_count()


def _fresh_stdio(env: dict) -> None:
    """New sys.stdin/stdout/stderr on descriptors 0-2, buffered as a fresh interpreter's would be."""
    import io

    unbuffered = bool(env.get("PYTHONUNBUFFERED"))
    encoding = env.get("PYTHONIOENCODING") or None
    sys.stdin = io.TextIOWrapper(io.BufferedReader(io.FileIO(0, "r", closefd=False)),
                                 encoding=encoding)
    out_raw = io.FileIO(1, "w", closefd=False)
    err_raw = io.FileIO(2, "w", closefd=False)
    sys.stdout = io.TextIOWrapper(out_raw if unbuffered else io.BufferedWriter(out_raw),
                                  encoding=encoding, write_through=unbuffered,
                                  line_buffering=False)
    sys.stderr = io.TextIOWrapper(err_raw, encoding=encoding, errors="backslashreplace",
                                  write_through=True, line_buffering=True)
    sys.__stdin__, sys.__stdout__, sys.__stderr__ = sys.stdin, sys.stdout, sys.stderr


def _reseed() -> None:
    """Every worker gets fresh random streams, as a freshly started interpreter would."""
    import random

    random.seed()
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed()
    dt_random = sys.modules.get("disttorch.random")
    if dt_random is not None:
        dt_random.default_generator.seed()


def _size_thread_pools(env: dict) -> None:
    """The template loaded BLAS single-threaded; give this worker the pool its environment asks
    for, as a fresh interpreter would have read it at import."""
    value = env.get("OPENBLAS_NUM_THREADS") or env.get("OMP_NUM_THREADS") or ""
    threads_module = sys.modules.get("disttorch._threads")
    try:
        wanted = int(value) if value else (os.cpu_count() or 1)
    except ValueError:
        return
    if threads_module is not None and wanted > 1:
        try:
            threads_module.set_num_threads(wanted)
        except Exception as exc:  # noqa: BLE001 - a slower worker is better than none
            sys.stderr.write(f"disttorch fork server: cannot set {wanted} BLAS threads: {exc}\n")


def _replay_import_hooks() -> None:
    """What `import disttorch` does with the worker's environment, which the template imported
    without: start tracing when DISTTORCH_TRACE_DIR is set. Runs where the user's own import
    would, after the bootstrap set up its signal handlers."""
    profiler = sys.modules.get("disttorch.profiler")
    if profiler is not None:
        profiler._start_from_env()  # noqa: SLF001


def _exit_code(exc: SystemExit) -> int:
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    try:
        sys.stderr.write(f"{code}\n")
    except Exception:  # noqa: BLE001
        pass
    return 1


def _finish_interpreter(code: int) -> None:
    """What the interpreter does at exit (threads joined, atexit, flushed stdio), then exit."""
    import atexit
    import threading

    try:
        threading._shutdown()  # noqa: SLF001 - joins non-daemon threads as Py_Finalize does
    except Exception:  # noqa: BLE001
        pass
    atexit._run_exitfuncs()  # noqa: SLF001
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001
            pass
    os._exit(code)


def _become_worker(request: dict, fds: list, sock: socket.socket) -> None:
    """In the forked worker: make this process what a freshly spawned worker would be. The
    caller then unwinds to the module level and runs the bootstrap there, so that a crash's
    stack has the same frames as a spawned worker's."""
    try:
        os.setsid()  # its own session and process group, as spawned with start_new_session
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        for fd in fds:
            if fd > 2:
                os.close(fd)
        fds.clear()
        sock.close()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGUSR1, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        launcher_pid = int(request["launcher_pid"])
        deadline = time.monotonic() + _REPARENT_WAIT
        while os.getppid() != launcher_pid:  # the intermediate child is exiting
            if time.monotonic() > deadline:
                os._exit(1)
            time.sleep(0.0005)
        env = request["env"]
        os.environ.clear()
        os.environ.update(env)
        os.chdir(request["cwd"])
        _fresh_stdio(env)
        _reseed()
        _size_thread_pools(env)
        sys.argv = [_BOOTSTRAP_PATH, *request["args"]]
    except BaseException:  # noqa: BLE001 - never fall back into the template's loop
        try:
            import traceback
            traceback.print_exc()
        finally:
            os._exit(1)


def _fork_worker(request: dict, fds: list, sock: socket.socket) -> int | None:
    """The new worker's pid (in the template), or None (in the worker itself)."""
    read_end, write_end = os.pipe()
    middle = os.fork()
    if middle == 0:
        try:
            os.close(read_end)
            worker = os.fork()
            if worker == 0:
                os.close(write_end)
                _become_worker(request, fds, sock)
                return None  # this process is the worker now
            os.write(write_end, str(worker).encode())
        except BaseException:  # noqa: BLE001
            pass
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        text = pipe.read()
    os.waitpid(middle, 0)  # once it is reaped, the worker's parent is the launcher
    if not text:
        raise OSError("the intermediate child could not fork the worker")
    return int(text)


def main():
    """Serve fork requests; returns the bootstrap module in a forked worker, None at the end."""
    sock = socket.socket(fileno=int(sys.argv[1]))
    launcher_pid = int(sys.argv[2])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the launcher forwards what workers need
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # the launcher's stack-dump requests reach it too
    if sys.platform.startswith("linux"):
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != launcher_pid:
        os._exit(1)
    imported = _preimport()
    bootstrap = _load_bootstrap()
    gc.collect()
    gc.freeze()  # children share these pages; a collection would otherwise copy them
    _send(sock, {"ready": True, "threads": _thread_count(), "imported": imported})
    while True:
        request, fds = _recv(sock)
        if request is None:
            return None
        try:
            if len(fds) != 3:
                raise OSError(f"expected 3 descriptors, got {len(fds)}")
            pid = _fork_worker(request, fds, sock)
            if pid is None:
                return bootstrap
            reply = {"pid": pid}
        except (OSError, ValueError, KeyError) as exc:
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        finally:
            for fd in fds:
                os.close(fd)
        _send(sock, reply)


if __name__ == "__main__":
    _worker_bootstrap = main()
    if _worker_bootstrap is not None:  # a forked worker: run as `python _bootstrap.py ...` would
        try:
            _worker_bootstrap.main(before_user_code=_replay_import_hooks)
            _code = 0
        except SystemExit as _exc:
            _code = _exit_code(_exc)
        except BaseException:  # noqa: BLE001 - the bootstrap reports the user's errors itself
            import traceback
            traceback.print_exc()
            _code = 1
        _finish_interpreter(_code)
