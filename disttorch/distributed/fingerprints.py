"""The fingerprint check: every member of a collective must have called the same one.

A collective's fingerprint (op, reduce op, dtype, root, shape; ``mailbox.Fingerprint``) is compared
among the members in one of three ways, all here:

- shared memory: each rank publishes ``words(seq, fp, aux)`` in its control row, and every rank
  compares all rows at the collective's first barrier (``compare_rows``);
- sockets: the receiver compares each message header with its own fingerprint (``mailbox.py``);
- ``DISTTORCH_DEBUG=detail``: an explicit all-to-all of header-only FINGERPRINT messages before
  the collective (``exchange``).

A mismatch raises ``CollectiveMismatchError`` naming, by global rank, who called what as which
collective number, ranks that agree grouped together.
"""
from __future__ import annotations

import zlib
from typing import Callable

import numpy as np

from . import collectives_shm as cs
from .errors import CollectiveMismatchError
from .mailbox import Fingerprint
from .transport.shm import FP_WORDS
from .wire import Kind, Op, message

#: fingerprints whose packed words are kept (a training loop repeats a handful of shapes)
_CACHE_LIMIT = 256


class FingerprintCheck:
    """Compares one group's fingerprints; ``global_ranks[g]`` names group rank ``g`` in messages."""

    def __init__(self, group_name: str, global_ranks: list[int]):
        self.group_name = group_name
        self.global_ranks = list(global_ranks)
        self._cache: dict = {}

    def words(self, seq: int, fp: Fingerprint, aux: int) -> list[int]:
        """The shared-memory row: ``seq``, the compared words, ``aux``, then the leading dims."""
        rest = self._cache.get(fp)
        if rest is None:
            shape = fp.shape
            if shape is None:
                ndim, numel, h = -1, 0, 0
            else:
                ndim, numel = len(shape), int(np.prod(shape, dtype=np.int64)) if shape else 1
                h = zlib.crc32(repr(tuple(shape)).encode())
            dims = list(shape or ())[: FP_WORDS - cs.FP_DIMS]
            rest = ([int(fp.op), int(fp.rop), int(fp.dtype), int(fp.root), ndim, numel, h], dims)
            if len(self._cache) > _CACHE_LIMIT:
                self._cache.clear()
            self._cache[fp] = rest
        return [seq] + rest[0] + [aux] + rest[1]

    def compare_rows(self, rows: np.ndarray, me: int, local_members: list[int]) -> None:
        """Raises if the published rows (one per local member, ``me`` ours) differ."""
        compared = rows[:, : cs.FP_COMPARED].tolist()
        mine = compared[me]
        if all(r == mine for r in compared):
            return
        entries = {local_members[k]: decode_words(rows[k]) for k in range(len(rows))}
        raise CollectiveMismatchError(self.mismatch_message(entries))

    def compare(self, entries: dict) -> None:
        """``entries``: group rank -> (seq, Fingerprint); raises unless all are equal."""
        if len(set(entries.values())) > 1:
            raise CollectiveMismatchError(self.mismatch_message(entries))

    def mismatch_message(self, entries: dict) -> str:
        """``entries``: group rank -> (seq, Fingerprint). Groups ranks that agree."""
        by: dict = {}
        for g in sorted(entries):
            by.setdefault(entries[g], []).append(g)
        parts = []
        for (seq, fp), ranks in by.items():
            who = ", ".join(str(self.global_ranks[g]) for g in ranks)
            parts.append(f"{'rank' if len(ranks) == 1 else 'ranks'} {who} called {fp.describe()} as "
                         f"collective #{seq}")
        return f"collective mismatch on group {self.group_name}: " + "; ".join(parts)

    def exchange(self, seq: int, fp: Fingerprint, deadline: float, members: list[int], *, me: int, job_id: int,
                 group_id: int, send: Callable, take: Callable) -> None:
        """DETAIL mode: sends our fingerprint to every other member, takes theirs, compares.

        ``send(g, header)`` sends a header-only message; ``take(key, deadline)`` returns the
        message matching ``(Kind.FINGERPRINT, g, seq)`` (the group's mailbox)."""
        shape = fp.shape if fp.shape is not None else ()
        for g in members:
            if g != me:
                send(g, message(Kind.FINGERPRINT, job_id=job_id, group=group_id, src=me, dtype=fp.dtype, seq=seq,
                                op=fp.op, rop=fp.rop, root=fp.root, shape=shape))
        entries = {me: (seq, fp)}
        for g in members:
            if g != me:
                h = take((Kind.FINGERPRINT, g, seq), deadline).header
                other = Fingerprint(h.op, h.rop, h.dtype, h.root, None if fp.shape is None else tuple(h.shape))
                entries[g] = (h.seq, other)
        self.compare(entries)


def decode_words(row) -> tuple:
    """A published shared-memory row back to ``(seq, Fingerprint)`` (a shape longer than the row
    holds ends in ``...``)."""
    seq, op, rop, dtype, root, ndim, numel, _h, _aux = (int(v) for v in row[: cs.FP_DIMS])
    if ndim < 0:
        shape = None
    else:
        dims = [int(v) for v in row[cs.FP_DIMS: cs.FP_DIMS + min(ndim, len(row) - cs.FP_DIMS)]]
        shape = tuple(dims) if len(dims) == ndim else tuple(dims) + (...,)
    try:
        return seq, Fingerprint(Op(op), rop, dtype, root, shape)
    except ValueError:
        return seq, Fingerprint(Op.BARRIER, rop, dtype, root, shape)
