"""Rank functions for test_teardown.py (module level: the harness spawns them by reference)."""
from __future__ import annotations

import time

from disttorch.distributed.wire import Kind, Op, decode


def _pg():
    from disttorch.distributed.api import _group
    return _group(None)


class _HoldOneMessage:
    """Holds this rank's message of one barrier round to one peer until ``release()`` says so;
    everything else goes through at once."""

    def __init__(self, inner, dst: int, step: int, release):
        self.inner, self.dst, self.step, self.release = inner, dst, step, release
        self.held_s = None

    def send(self, dst, header, payload, copy=False):
        h = decode(header, 1 << 40)
        if dst == self.dst and h.kind == Kind.DATA and h.op == Op.BARRIER and h.step == self.step:
            t0 = time.monotonic()
            self.release()
            self.held_s = time.monotonic() - t0
        self.inner.send(dst, header, payload, copy)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def leave_while_a_peer_still_waits(rank: int, world: int) -> dict:
    """Four ranks over sockets, one barrier (dissemination: round 1 sends to rank + 2). Rank 3
    holds its round-1 message to rank 1 until ranks 0 and 2, which passed the barrier, have
    destroyed their group and exited, and a while more (past the dead-peer grace and the
    lost-connection grace): rank 1 then waits inside the barrier, for rank 3 only, while two peers
    that finished it are gone. Then ranks 1 and 3 call a second barrier, which 0 and 2 left
    before joining: they must be named at once, not at the deadline."""
    from disttorch.distributed.liveness import process_state

    pg = _pg()
    quick = [pg.peers[g]["pid"] for g in (0, 2)]

    def until_the_quick_ranks_exited():
        deadline = time.monotonic() + 60
        while any(process_state(pid) != "dead" for pid in quick) and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(1.5)

    hold = None
    if rank == 3:
        hold = pg.transport = _HoldOneMessage(pg.transport, dst=1, step=1, release=until_the_quick_ranks_exited)
    t0 = time.monotonic()
    pg.barrier()
    out = {"elapsed": time.monotonic() - t0, "held_s": hold.held_s if hold else None,
           "quick_exited": all(process_state(pid) == "dead" for pid in quick)}
    if rank in (1, 3):
        t0 = time.monotonic()
        try:
            pg.barrier()
            out["second"] = None
        except Exception as e:  # noqa: BLE001 - the test checks which error
            out["second"] = (type(e).__name__, str(e), time.monotonic() - t0)
    return out
