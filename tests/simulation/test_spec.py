"""Link and fault specs: units, defaults, seeded choices, and errors that name the bad value."""
import pytest

from disttorch.distributed.simulation.spec import (SpecError, parse_bandwidth, parse_duration, parse_fault,
                                                   parse_faults, parse_network, resolve_faults)


def test_network_spec_units_and_defaults():
    s = parse_network("latency=2ms,bandwidth=1gbit,jitter=0.5ms")
    assert (s.latency_s, s.bandwidth_bps, s.jitter_s) == (pytest.approx(2e-3), 1e9, pytest.approx(5e-4))
    s = parse_network(" bandwidth = 100Mbit ")
    assert (s.latency_s, s.bandwidth_bps, s.jitter_s) == (0.0, 1e8, 0.0)
    assert parse_bandwidth("25gbps") == 25e9 and parse_bandwidth("10Gbit/s") == 1e10
    assert parse_duration("500us", "latency") == pytest.approx(5e-4)
    assert parse_duration("1.5s", "latency") == 1.5
    assert parse_network("latency=50us").bandwidth_bps is None  # unlimited


def test_network_spec_round_trips_through_its_text():
    for text in ("latency=2ms,bandwidth=1gbit,jitter=0.5ms", "bandwidth=10gbit", "latency=37us"):
        s = parse_network(text)
        assert parse_network(s.to_text()) == s
    assert parse_network("latency=2ms,bandwidth=1gbit,jitter=0.5ms").describe() == \
        "1 Gbit/s, latency 2 ms (jitter 500 us)"


@pytest.mark.parametrize("text,needle", [
    ("latency=2", "latency='2': expected a duration with a unit"),
    ("bandwidth=1gigabit", "bandwidth='1gigabit'"),
    ("bandwidth=0gbit", "bandwidth='0gbit': must be positive"),
    ("delay=2ms", "unknown key 'delay' (known: latency, bandwidth, jitter)"),
    ("latency=1ms,latency=2ms", "latency is given twice"),
    ("latency", "expected KEY=VALUE items, got 'latency'"),
    ("", "empty spec"),
])
def test_bad_network_specs_name_the_value(text, needle):
    with pytest.raises(SpecError, match=None) as err:
        parse_network(text)
    assert needle in str(err.value), str(err.value)


def test_fault_spec_forms():
    f = parse_fault("rank=2,at=collective:50,kind=kill")
    assert (f.rank, f.at_first, f.at_last, f.kind, f.restart) == (2, 50, 50, "kill", 0)
    f = parse_fault("rank=random,at=collective:10-20,kind=slow:2.5x,restart=any")
    assert (f.rank, f.at_first, f.at_last, f.kind, f.factor, f.restart) == (None, 10, 20, "slow", 2.5, None)
    assert parse_fault("kind=slow:3,at=collective:1,rank=0").factor == 3.0
    assert [x.kind for x in parse_faults("rank=0,at=collective:1,kind=drop; rank=1,at=collective:2,kind=corrupt")] \
        == ["drop", "corrupt"]


@pytest.mark.parametrize("text,needle", [
    ("rank=2,at=collective:50", "missing kind"),
    ("rank=2,at=collective:50,kind=explode", "unknown kind 'explode'"),
    ("rank=2,at=collective:50,kind=slow:1x", "expected slow:Nx with N > 1"),
    ("rank=2,at=collective:50,kind=kill:3", "kind kill takes no argument"),
    ("rank=-1,at=collective:5,kind=kill", "rank must be an integer >= 0, got '-1'"),
    ("rank=1,at=step:5,kind=kill", "expected at=collective:N"),
    ("rank=1,at=collective:0,kind=kill", "collective number must be an integer >= 1, got '0'"),
    ("rank=1,at=collective:9-3,kind=kill", "empty range"),
    ("rank=1,at=collective:3,kind=kill,restart=x", "restart must be an integer >= 0, got 'x'"),
])
def test_bad_fault_specs_name_the_value(text, needle):
    with pytest.raises(SpecError) as err:
        parse_fault(text)
    assert needle in str(err.value) and text in str(err.value), str(err.value)


def test_random_choices_follow_the_seed_and_each_fault_has_its_own_stream():
    specs = [parse_fault("rank=random,at=collective:1-1000,kind=kill"),
             parse_fault("rank=random,at=collective:1-1000,kind=hang")]
    a, b = resolve_faults(specs, 7, 8), resolve_faults(specs, 7, 8)
    assert a == b
    assert resolve_faults(specs, 8, 8) != a                       # another seed, other choices
    assert resolve_faults(specs[:1], 7, 8) == a[:1]               # adding a fault changes no other
    assert all(0 <= f.rank < 8 and 1 <= f.collective <= 1000 for f in a)
    seen = {resolve_faults(specs[:1], s, 8)[0].rank for s in range(40)}
    assert len(seen) > 4  # the seed really picks among ranks


def test_rank_out_of_range_is_refused_with_the_world_size():
    with pytest.raises(SpecError, match=r"rank 4 is out of range for 4 workers \(ranks 0..3\)"):
        resolve_faults([parse_fault("rank=4,at=collective:1,kind=kill")], 0, 4)
    assert resolve_faults([parse_fault("rank=4,at=collective:1,kind=kill")], 0, None)[0].rank == 4
