"""fingerprints.py: the packed shared-memory words, and mismatches named by rank (no sockets needed)."""
import numpy as np
import pytest

from disttorch.distributed.errors import CollectiveMismatchError
from disttorch.distributed.fingerprints import FingerprintCheck, decode_words
from disttorch.distributed.mailbox import Fingerprint
from disttorch.distributed.reduce_op import ReduceOp
from disttorch.distributed.transport.shm import FP_WORDS
from disttorch.distributed.wire import Kind, Op, decode, dtype_code, message

F32, F64 = dtype_code(np.dtype(np.float32)), dtype_code(np.dtype(np.float64))


def _fp(shape=(4, 5), dtype=F32, op=Op.ALL_REDUCE, rop=int(ReduceOp.SUM), root=-1):
    return Fingerprint(op, rop, dtype, root, shape)


def _rows(*words):
    rows = np.zeros((len(words), FP_WORDS), np.int64)
    for k, w in enumerate(words):
        rows[k, : len(w)] = w
    return rows


def test_words_round_trip_through_a_row():
    check = FingerprintCheck("world", [0, 1])
    fp = _fp(shape=(3, 7, 2))
    row = _rows(check.words(9, fp, aux=0))[0]
    assert decode_words(row) == (9, fp)
    assert check.words(10, fp, 0)[0] == 10  # cached words, fresh sequence number
    assert decode_words(_rows(check.words(1, _fp(shape=None), 5))[0]) == (1, _fp(shape=None))


def test_agreeing_rows_pass_and_a_different_shape_names_the_rank():
    check = FingerprintCheck("world", [0, 1, 2])
    same = check.words(4, _fp(), 0)
    check.compare_rows(_rows(same, same, same), me=0, local_members=[0, 1, 2])
    odd = check.words(4, _fp(shape=(4, 6)), 0)
    with pytest.raises(CollectiveMismatchError) as e:
        check.compare_rows(_rows(same, odd, same), me=0, local_members=[0, 1, 2])
    assert str(e.value) == ("collective mismatch on group world: ranks 0, 2 called all_reduce(shape=(4, 5), "
                            "dtype=float32, op=SUM) as collective #4; rank 1 called all_reduce(shape=(4, 6), "
                            "dtype=float32, op=SUM) as collective #4")


def test_a_subgroup_names_global_ranks():
    check = FingerprintCheck("g1", [3, 5])
    with pytest.raises(CollectiveMismatchError, match=r"rank 3 called broadcast\(shape=\(2,\), dtype=float32, "
                       r"root=0\) as collective #2; rank 5 called broadcast\(shape=\(2,\), dtype=float64, root=0\)"):
        check.compare({0: (2, _fp((2,), F32, Op.BROADCAST, 0, 0)), 1: (2, _fp((2,), F64, Op.BROADCAST, 0, 0))})


def test_a_different_sequence_number_is_a_mismatch():
    check = FingerprintCheck("world", [0, 1])
    with pytest.raises(CollectiveMismatchError, match="rank 0 called barrier.* #3; rank 1 called barrier.* #4"):
        check.compare_rows(_rows(check.words(3, _fp((), op=Op.BARRIER, rop=0), 0),
                                 check.words(4, _fp((), op=Op.BARRIER, rop=0), 0)), me=1, local_members=[0, 1])


def test_detail_exchange_sends_headers_and_compares_what_comes_back():
    check = FingerprintCheck("world", [0, 1, 2])
    sent = {}
    theirs = {1: _fp(), 2: _fp(op=Op.REDUCE, root=1)}

    class Msg:
        def __init__(self, header):
            self.header = header

    def take(key, deadline):
        kind, g, seq = key
        assert kind == Kind.FINGERPRINT and deadline == 99.0
        fp = theirs[g]
        return Msg(decode(message(Kind.FINGERPRINT, job_id=1, group=0, src=g, dtype=fp.dtype, seq=seq, op=fp.op,
                                  rop=fp.rop, root=fp.root, shape=fp.shape), 1 << 20))

    with pytest.raises(CollectiveMismatchError, match=r"ranks 0, 1 called all_reduce.*; rank 2 called "
                                                       r"reduce\(shape=\(4, 5\), dtype=float32, op=SUM, root=1\)"):
        check.exchange(7, _fp(), 99.0, [0, 1, 2], me=0, job_id=1, group_id=0,
                       send=lambda g, hdr: sent.__setitem__(g, decode(hdr, 0)), take=take)
    assert sorted(sent) == [1, 2]
    assert (sent[1].kind, sent[1].seq, sent[1].op, sent[1].shape) == (Kind.FINGERPRINT, 7, Op.ALL_REDUCE, (4, 5))
    theirs[2] = _fp()
    check.exchange(8, _fp(), 99.0, [0, 1, 2], me=0, job_id=1, group_id=0, send=lambda g, hdr: None, take=take)
