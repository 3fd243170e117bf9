"""disttorch-run's simulation options: validation, the config file, what each worker gets."""
import json

import pytest

from disttorch_launcher.cli import build_parser, config_from_args


def _config(argv, env=None):
    args = build_parser().parse_args([*argv, "train.py"])
    return config_from_args(args, env or {})[0]


def test_no_option_no_simulation():
    assert _config(["--nproc-per-node", "2"]).simulation is None


def test_options_become_worker_variables(tmp_path):
    cfg = _config(["--nproc-per-node", "4", "--simulate-network", "latency=2ms,bandwidth=1gbit,jitter=0.5ms",
                   "--inject-fault", "rank=2,at=collective:50,kind=kill",
                   "--inject-fault", "rank=random,at=collective:3-9,kind=slow:3x,restart=any",
                   "--fault-seed", "7", "--trace-dir", str(tmp_path / "t")])
    sim = cfg.simulation
    env = sim.worker_env({})
    assert env == {
        "DISTTORCH_SIMULATE_NETWORK": "latency=2ms,bandwidth=1gbit,jitter=0.5ms",
        "DISTTORCH_INJECT_FAULTS": "rank=2,at=collective:50,kind=kill;rank=random,at=collective:3-9,kind=slow:3x,"
                                   "restart=any",
        "DISTTORCH_FAULT_SEED": "7",
        "DISTTORCH_TRACE_DIR": str(tmp_path / "t"),
        "DISTTORCH_TRANSPORT": "tcp",
    }
    assert sim.worker_env({"DISTTORCH_TRANSPORT": "ipc"}).get("DISTTORCH_TRANSPORT") is None  # ipc is shaped too
    assert sim.fault_lines[0] == "rank 2: kill at collective 50 (attempt 0)"
    assert sim.fault_lines[1].endswith("(every attempt)")
    assert sim.network_text == "1 Gbit/s, latency 2 ms (jitter 500 us)"


def test_trace_only_keeps_shared_memory(tmp_path):
    env = _config(["--trace-dir", str(tmp_path)]).simulation.worker_env({})
    assert "DISTTORCH_TRANSPORT" not in env and env["DISTTORCH_TRACE_DIR"] == str(tmp_path)


@pytest.mark.parametrize("argv,needle", [
    (["--simulate-network", "bandwidth=fast"], "bandwidth='fast'"),
    (["--inject-fault", "rank=1,at=collective:5"], "missing kind"),
    (["--nproc-per-node", "2", "--inject-fault", "rank=3,at=collective:5,kind=hang"],
     "rank 3 is out of range for 2 workers"),
    (["--fault-seed", "x"], "--fault-seed='x': expected an integer"),
])
def test_bad_values_are_named(argv, needle):
    with pytest.raises(ValueError) as err:
        _config(argv)
    assert needle in str(err.value)


def test_config_file_toml_and_json_with_options_winning(tmp_path):
    toml = tmp_path / "sim.toml"
    toml.write_text('network = "latency=1ms,bandwidth=10gbit"\nseed = 3\ntrace_dir = "tr"\n'
                    '[[fault]]\nrank = 1\nat = "collective:4"\nkind = "drop"\n')
    sim = _config(["--nproc-per-node", "2", "--simulate", str(toml)]).simulation
    assert (sim.network, sim.faults, sim.seed) == \
        ("latency=1ms,bandwidth=10gbit", ["rank=1,at=collective:4,kind=drop"], 3)
    assert sim.trace_dir.endswith("/tr")
    sim = _config(["--nproc-per-node", "2", "--simulate", str(toml), "--simulate-network", "bandwidth=1gbit",
                   "--inject-fault", "rank=0,at=collective:9,kind=corrupt"]).simulation
    assert sim.network == "bandwidth=1gbit" and len(sim.faults) == 2
    js = tmp_path / "sim.json"
    js.write_text(json.dumps({"network": {"bandwidth": "100mbit"}, "faults": ["rank=0,at=collective:2,kind=hang"]}))
    sim = _config(["--simulate", str(js)]).simulation
    assert sim.network == "bandwidth=100mbit" and sim.faults == ["rank=0,at=collective:2,kind=hang"]
    bad = tmp_path / "bad.toml"
    bad.write_text('netwrok = "bandwidth=1gbit"\n')
    with pytest.raises(ValueError, match=r"unknown key\(s\) netwrok"):
        _config(["--simulate", str(bad)])
    with pytest.raises(ValueError, match="No such file"):
        _config(["--simulate", str(tmp_path / "missing.toml")])


def test_dry_run_shows_the_variables(tmp_path, capsys):
    from disttorch_launcher.cli import main

    script = tmp_path / "train.py"
    script.write_text("")
    assert main(["--dry-run", "--nproc-per-node", "2", "--simulate-network", "bandwidth=1gbit", str(script)]) == 0
    out = capsys.readouterr().out
    assert "DISTTORCH_SIMULATE_NETWORK=bandwidth=1gbit" in out and "DISTTORCH_TRANSPORT=tcp" in out
