"""Communication schedules as pure functions: who sends which block to whom, step by step.

Nothing here touches a socket; ``tests/distributed/test_algorithms.py`` runs every schedule on
NumPy arrays for many world sizes. Ranks are positions ``0..world-1`` inside the participating
set; the executor maps them to peers.

- ring reduce-scatter + ring all-gather: bandwidth-optimal (each rank sends ``2(n-1)/n`` of the
  data), used for large all-reduces, chunked and pipelined by the executor.
- recursive doubling with the standard fold for non-powers of two: ``log2(n)`` rounds, used for
  small all-reduces where latency dominates.
- binomial trees for broadcast and reduce, dissemination for barrier.
"""
from __future__ import annotations

from dataclasses import dataclass


def partition(n: int, parts: int) -> list[tuple[int, int]]:
    """Splits ``range(n)`` into ``parts`` contiguous blocks, sizes differing by at most one.

    The first ``n % parts`` blocks get the extra element; blocks may be empty when ``n < parts``.
    """
    if parts <= 0:
        raise ValueError(f"parts must be positive, got {parts}")
    base, extra = divmod(n, parts)
    bounds, start = [], 0
    for i in range(parts):
        stop = start + base + (1 if i < extra else 0)
        bounds.append((start, stop))
        start = stop
    return bounds


def chunk_ranges(start: int, stop: int, chunk: int) -> list[tuple[int, int]]:
    """Splits ``[start, stop)`` into pieces of at most ``chunk`` elements (one empty piece if empty).

    Every rank computes the same pieces for the same block, so chunk ``i`` of a block is the same
    element range on the sender and the receiver.
    """
    if chunk <= 0:
        raise ValueError(f"chunk must be positive, got {chunk}")
    if stop <= start:
        return [(start, start)]
    return [(a, min(a + chunk, stop)) for a in range(start, stop, chunk)]


@dataclass(frozen=True)
class RingStep:
    send_to: int
    send_block: int
    recv_from: int
    recv_block: int


def ring_reduce_scatter(rank: int, world: int) -> list[RingStep]:
    """``world - 1`` steps after which rank ``r`` holds block ``r`` reduced over all ranks.

    At step ``s`` rank ``r`` sends block ``(r - s - 1) % n`` right and reduces block
    ``(r - s - 2) % n`` received from the left into its own copy.
    """
    right, left = (rank + 1) % world, (rank - 1) % world
    return [RingStep(right, (rank - s - 1) % world, left, (rank - s - 2) % world) for s in range(world - 1)]


def ring_all_gather(rank: int, world: int) -> list[RingStep]:
    """``world - 1`` steps after which every rank holds every block, starting from its own block ``r``.

    At step ``s`` rank ``r`` sends block ``(r - s) % n`` right and stores block ``(r - s - 1) % n``
    received from the left.
    """
    right, left = (rank + 1) % world, (rank - 1) % world
    return [RingStep(right, (rank - s) % world, left, (rank - s - 1) % world) for s in range(world - 1)]


@dataclass(frozen=True)
class DoublingStep:
    """One round of recursive doubling for one rank.

    action: "send" (give my data to ``peer`` and go idle), "recv_reduce" (fold ``peer``'s data into
    mine), "exchange" (swap with ``peer`` and reduce), "send_result" / "recv_result" (hand the final
    value back to a rank folded away by the non-power-of-two step). ``round`` is the same number on
    both sides of a message, so it can label it.
    """

    action: str
    peer: int
    round: int


def recursive_doubling(rank: int, world: int) -> list[DoublingStep]:
    """All-reduce in ``log2 p`` rounds (+2 when ``world`` is not a power of two ``p``).

    With ``p`` the largest power of two <= ``n`` and ``rem = n - p``: among the first ``2*rem``
    ranks each even rank folds its data into the next odd one (round 0) and waits; the remaining
    ``p`` ranks run the hypercube exchange (rounds 1..log2 p); the odd ranks then return the result
    to their even partners (last round). Every exchange reduces the same two values (in either
    order), so all ranks end with bit-identical results for commutative operations.
    """
    if world == 1:
        return []
    p = 1 << (world.bit_length() - 1)
    rem = world - p
    last = p.bit_length()  # rounds 1..log2(p) exchange; this one returns results
    if rank < 2 * rem and rank % 2 == 0:
        return [DoublingStep("send", rank + 1, 0), DoublingStep("recv_result", rank + 1, last)]
    steps: list[DoublingStep] = []
    if rank < 2 * rem:
        steps.append(DoublingStep("recv_reduce", rank - 1, 0))
        vrank = rank // 2
    else:
        vrank = rank - rem
    mask, rnd = 1, 1
    while mask < p:
        vpeer = vrank ^ mask
        peer = vpeer * 2 + 1 if vpeer < rem else vpeer + rem
        steps.append(DoublingStep("exchange", peer, rnd))
        mask <<= 1
        rnd += 1
    if rank < 2 * rem:
        steps.append(DoublingStep("send_result", rank - 1, last))
    return steps


@dataclass(frozen=True)
class Tree:
    parent: int | None    # None at the root
    children: tuple       # largest subtree first (so the biggest forwarding starts earliest)


def binomial_tree(rank: int, world: int, root: int) -> Tree:
    """The binomial tree rooted at ``root``: ``ceil(log2 n)`` levels, used by broadcast and reduce."""
    vr = (rank - root) % world
    parent = None
    mask = 1
    while mask < world:
        if vr & mask:
            parent = ((vr - mask) + root) % world
            break
        mask <<= 1
    children = []
    mask >>= 1
    while mask > 0:
        if vr + mask < world:
            children.append((vr + mask + root) % world)
        mask >>= 1
    return Tree(parent, tuple(children))


def dissemination_barrier(rank: int, world: int) -> list[tuple[int, int]]:
    """``ceil(log2 n)`` rounds of (send_to, recv_from); after them every rank has heard from all."""
    rounds, dist = [], 1
    while dist < world:
        rounds.append(((rank + dist) % world, (rank - dist) % world))
        dist <<= 1
    return rounds


def choose_all_reduce(nbytes: int, world: int, switch_bytes: int) -> str:
    """"doubling" below ``switch_bytes`` (latency-bound), "ring" from there (bandwidth-bound).

    The switch point (``DISTTORCH_ALLREDUCE_SWITCH``, 2 MiB, declared in ``launcher/settings.py``)
    was measured per algorithm over tcp; the table closes ``distributed/config.py``'s docstring.
    ``benchmarks/allreduce.py`` measures the chosen algorithm against gloo, not the two against
    each other: remeasure the switch with ``--sizes`` around it and the variable set each way.
    """
    return "doubling" if nbytes < switch_bytes or world == 1 else "ring"


def host_layout(host_ids: list) -> tuple[list[list[int]], list[int]]:
    """Groups ranks by host: (ranks of each host in first-seen host order, the leader of each host).

    The leader of a host is its lowest rank; hierarchical collectives reduce inside each host,
    run across leaders, then fan out inside each host again.
    """
    order: dict = {}
    for r, h in enumerate(host_ids):
        order.setdefault(h, []).append(r)
    hosts = list(order.values())
    return hosts, [h[0] for h in hosts]
