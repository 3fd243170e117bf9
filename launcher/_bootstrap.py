"""Worker bootstrap: runs the user's script so that the launcher can supervise it.

    python launcher/_bootstrap.py script.py [args]     run a script (as `python script.py`)
    python launcher/_bootstrap.py -m module [args]     run a module (as `python -m module`)
    python launcher/_bootstrap.py --exec cmd [args]    exec a program (`--no-python`, ssh)

Before the user's code runs it

* asks the kernel to send SIGTERM when the launcher dies (prctl PR_SET_PDEATHSIG on Linux), and
  starts a watchdog thread that stops the worker's whole process group when the launcher pid
  is gone, so that a launcher killed with SIGKILL leaves no worker behind;
* makes SIGTERM reach the worker's own children (it leads its process group) before it exits;
* turns on faulthandler: a crash (segfault, abort) prints the Python stack of every thread, and
  SIGUSR1 (the launcher forwards its own, and a rank whose collective timed out asks for it)
  prints them without stopping the worker.

Ctrl-C (SIGINT, forwarded by the launcher) ends the worker quietly with exit status 130: the
launcher's one line says what happened.

When the user's code raises, the traceback (without this file's and runpy's frames) is written
as JSON to the file named by DISTTORCH_ERROR_FILE (torchelastic's TORCHELASTIC_ERROR_FILE role),
printed as Python would, and the worker exits with status 1. No decorator is needed in the
script. This file imports only the standard library and runs as a plain file (not through the
`launcher` package) so it starts as fast as the interpreter does.
"""
import os
import signal
import sys
import threading
import time

_PR_SET_PDEATHSIG = 1
_WATCH_PERIOD = 0.5  # seconds between checks of the launcher pid


def _launcher_pid() -> int:
    try:
        return int(os.environ.get("DISTTORCH_LAUNCHER_PID", "0"))
    except ValueError:
        return 0


def _set_parent_death_signal(sig: int) -> None:
    """Have the kernel send `sig` to this process when its parent exits (Linux only)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    except (OSError, AttributeError):
        pass  # no prctl: the watchdog thread still covers the worker


def _stop_own_group(grace: float) -> None:
    """SIGTERM this worker's process group (itself included), then SIGKILL after `grace`."""
    leader = os.getpgrp() == os.getpid()
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            if leader:
                os.killpg(os.getpgrp(), sig)
            else:
                os.kill(os.getpid(), sig)
        except OSError:
            pass
        time.sleep(grace)


def _watch_launcher(launcher_pid: int, grace: float) -> None:
    # The parent pid changes (to init or a subreaper) the moment the launcher is gone.
    while os.getppid() == launcher_pid:
        time.sleep(_WATCH_PERIOD)
    _stop_own_group(grace)


def _forward_sigterm(signum, frame) -> None:
    """SIGTERM handler: pass SIGTERM to our process group, then die of it as by default.

    The launcher signals the whole group itself; this matters when the kernel's parent-death
    signal reaches only this process, whose children would otherwise outlive it.
    """
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if os.getpgrp() == os.getpid():
        try:
            os.killpg(os.getpgrp(), signal.SIGTERM)
        except OSError:
            pass
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def _guard_against_orphaning(exec_mode: bool) -> None:
    launcher_pid = _launcher_pid()
    _set_parent_death_signal(signal.SIGTERM)
    if launcher_pid and os.getppid() != launcher_pid:
        # The launcher died before prctl took effect: nothing will ever signal us.
        os._exit(1)
    if exec_mode or not launcher_pid:
        return  # exec keeps the parent-death signal; threads and handlers do not survive it
    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _forward_sigterm)
    try:
        grace = float(os.environ.get("DISTTORCH_STOP_GRACE", "5"))
    except ValueError:
        grace = 5.0
    threading.Thread(target=_watch_launcher, args=(launcher_pid, grace),
                     name="disttorch-launcher-watchdog", daemon=True).start()


def _enable_stack_dumps() -> None:
    import faulthandler

    faulthandler.enable(all_threads=True)
    if hasattr(signal, "SIGUSR1"):
        faulthandler.register(signal.SIGUSR1, all_threads=True, chain=False)


def _user_traceback(tb):
    """Drop the leading frames that belong to this bootstrap and to runpy."""
    import runpy

    skip = {os.path.abspath(__file__), os.path.abspath(runpy.__file__), "<frozen runpy>"}
    while tb is not None:
        name = tb.tb_frame.f_code.co_filename
        if name not in skip and os.path.abspath(name) not in skip:
            break
        tb = tb.tb_next
    return tb


def _write_error_file(exc: BaseException, tb) -> None:
    path = os.environ.get("DISTTORCH_ERROR_FILE") or os.environ.get("TORCHELASTIC_ERROR_FILE")
    if not path:
        return
    import json
    import socket
    import traceback

    record = {
        "version": 1,
        "rank": os.environ.get("RANK"),
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "timestamp": time.time(),
        "exc_type": type(exc).__qualname__,
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(type(exc), exc, tb)),
    }
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(record, f)
        os.replace(tmp, path)  # the launcher never reads a half-written file
    except OSError as err:
        sys.stderr.write(f"disttorch bootstrap: cannot write error file {path!r}: {err}\n")


def _run_user_code(argv: list) -> None:
    import runpy

    if argv[0] == "-m":
        if len(argv) < 2:
            raise SystemExit("disttorch bootstrap: -m needs a module name")
        module = argv[1]
        sys.argv = [module, *argv[2:]]  # run_module replaces argv[0] with the module's file
        sys.path[0] = os.getcwd()
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    else:
        script = argv[0]
        sys.argv = list(argv)
        # As `python script.py` does: the script's (symlink-resolved) directory comes first.
        sys.path[0] = os.path.dirname(os.path.realpath(script))
        # Python gives the main script an absolute __file__ (3.9+); tracebacks then show it.
        runpy.run_path(os.path.abspath(script), run_name="__main__")


def main(before_user_code=None) -> None:
    """Run the worker; `before_user_code` (the fork server's) runs after the guards are set up,
    where a fresh interpreter would first import the user's modules."""
    argv = sys.argv[1:]
    if not argv:
        raise SystemExit("usage: _bootstrap.py (script.py | -m module | --exec cmd) [args]")
    if argv[0] == "--exec":
        _guard_against_orphaning(exec_mode=True)
        try:
            os.execvp(argv[1], argv[1:])
        except (OSError, IndexError) as exc:
            sys.stderr.write(f"disttorch bootstrap: cannot execute {argv[1:2]}: {exc}\n")
            _write_error_file(exc, None)
            os._exit(127)
    _guard_against_orphaning(exec_mode=False)
    _enable_stack_dumps()
    try:
        if before_user_code is not None:
            before_user_code()
        _run_user_code(argv)
    except SystemExit:
        raise  # an exit status is not a crash to report
    except KeyboardInterrupt:
        # The launcher forwarded Ctrl-C and says so in one line; a traceback per rank is noise.
        sys.exit(130)  # the shell's code for SIGINT
    except BaseException as exc:  # noqa: BLE001 - every other escape is the worker's failure
        tb = _user_traceback(exc.__traceback__)
        exc.__traceback__ = tb  # the default excepthook prints the exception's own traceback
        _write_error_file(exc, tb)
        sys.excepthook(type(exc), exc, tb)
        sys.exit(1)


if __name__ == "__main__":
    main()
