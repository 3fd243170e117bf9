"""`disttorch-run --simulate-network / --inject-fault / --trace-dir`: a cluster on one machine.

The options (or a `--simulate FILE` in TOML or JSON) are checked here, before any worker starts,
with every error naming the bad value; the workers get them as environment variables and apply
them in `init_process_group` (`disttorch/distributed/simulation/`). With a network or faults the
ranks behave as separate hosts: `DISTTORCH_TRANSPORT=tcp`, no shared memory. With `--trace-dir`
the per-rank traces are merged into `DIR/trace.json` when the job ends, failed or not.

The spec parser is the workers' own `disttorch/distributed/simulation/spec.py`, loaded by path:
importing it as part of `disttorch` would import the tensor stack, which the launcher never does
(it must start fast and survive a broken worker). The file uses only the standard library.
"""
from __future__ import annotations

import argparse
import glob
import importlib.util
import json
import os
import sys
from dataclasses import dataclass, field

from . import output

__all__ = ["add_arguments", "from_args", "SimulationConfig", "load_spec_module"]

_SPEC_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "disttorch", "distributed", "simulation", "spec.py")
_spec_module = None
_FILE_KEYS = ("network", "faults", "fault", "seed", "trace_dir")


def load_spec_module():
    """The shared spec parser (see the module docstring), loaded once."""
    global _spec_module
    if _spec_module is None:
        if not os.path.exists(_SPEC_PATH):
            raise ValueError(f"simulation options need disttorch next to the launcher; no {_SPEC_PATH}")
        spec = importlib.util.spec_from_file_location("_disttorch_simulation_spec", _SPEC_PATH)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up while building classes
        spec.loader.exec_module(module)
        _spec_module = module
    return _spec_module


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `simulation` option group."""
    g = parser.add_argument_group(
        "simulation", "run the workers on this machine as if they were a cluster (see README, "
                      "'disttorch-run --simulate')")
    g.add_argument("--simulate", metavar="FILE", default=None,
                   help="read the settings below from a TOML or JSON file (keys: network, faults, "
                        "seed, trace_dir); options given on the command line win")
    g.add_argument("--simulate-network", metavar="SPEC", default=None,
                   help="shape every transfer between ranks: 'latency=2ms,bandwidth=1gbit,"
                        "jitter=0.5ms' (each key optional); ranks act as separate hosts")
    g.add_argument("--inject-fault", metavar="SPEC", action="append", default=None,
                   help="'rank=2,at=collective:50,kind=kill|hang|slow:3x|drop|corrupt' "
                        "[,restart=N|any]; repeatable. rank=random and at=collective:A-B are "
                        "drawn from --fault-seed")
    g.add_argument("--fault-seed", metavar="N", default=None,
                   help="seed of every random choice of the simulation: random ranks and "
                        "collectives, jitter, the corrupted byte (default 0)")
    g.add_argument("--trace-dir", metavar="DIR", default=None,
                   help="record compute and communication spans of every rank; merged into "
                        "DIR/trace.json (Chrome trace / Perfetto) when the job ends")


@dataclass
class SimulationConfig:
    """Validated simulation settings of one launch."""

    network: str | None = None            # as given (validated)
    network_text: str | None = None       # in words, for the announcement
    faults: list[str] = field(default_factory=list)
    fault_lines: list[str] = field(default_factory=list)  # resolved, in words
    seed: int = 0
    trace_dir: str | None = None          # absolute

    @property
    def separate_hosts(self) -> bool:
        return self.network is not None or bool(self.faults)

    def worker_env(self, base: dict) -> dict[str, str]:
        """The variables each worker gets (``base``: the worker's environment so far)."""
        env: dict[str, str] = {"DISTTORCH_FAULT_SEED": str(self.seed)}
        if self.network is not None:
            env["DISTTORCH_SIMULATE_NETWORK"] = self.network
        if self.faults:
            env["DISTTORCH_INJECT_FAULTS"] = ";".join(self.faults)
        if self.trace_dir is not None:
            env["DISTTORCH_TRACE_DIR"] = self.trace_dir
        if self.separate_hosts and base.get("DISTTORCH_TRANSPORT", "auto").lower() not in ("tcp", "ipc"):
            env["DISTTORCH_TRANSPORT"] = "tcp"  # no shared memory: every byte crosses the shaped link
        return env

    def start(self) -> None:
        """Before the first attempt: say what is simulated, and clear old per-rank traces."""
        if self.network is not None:
            output.say(f"simulating a cluster: every rank is a host whose link has {self.network_text}")
        elif self.faults:
            output.say("simulating a cluster: every rank is a host of its own (tcp, no shared memory)")
        for line in self.fault_lines:
            output.say(f"injecting fault {line}")
        if self.trace_dir is not None:
            for path in glob.glob(os.path.join(self.trace_dir, "ranks", "rank*-attempt*.json")):
                try:
                    os.unlink(path)
                except OSError:
                    pass

    def finish(self) -> None:
        """After the job: merge the traces (whatever the job's outcome)."""
        if self.trace_dir is None:
            return
        from .tracemerge import merge_dir, summary_lines

        try:
            result = merge_dir(self.trace_dir)
        except (OSError, ValueError) as exc:
            output.say(f"could not merge the traces in {self.trace_dir}: {exc}")
            return
        if result is None:
            output.say(f"no trace files in {os.path.join(self.trace_dir, 'ranks')} (did the workers import "
                       f"disttorch?)")
            return
        path, merged = result
        ranks = sorted({e["pid"] for e in merged["traceEvents"]})
        output.say(f"trace of {len(ranks)} rank{'s' if len(ranks) != 1 else ''} written to {path} "
                   f"(open it at https://ui.perfetto.dev or chrome://tracing)")
        for line in summary_lines(merged):
            output.say(line)


def _toml_loads(text: str, path: str) -> dict:
    """TOML through the standard library (3.11+) or, on 3.10, tomli: the same parser as a package."""
    try:
        import tomllib
    except ImportError:
        try:
            import tomli as tomllib
        except ImportError:
            raise ValueError(f"--simulate {path!r}: reading TOML on Python 3.10 needs the tomli package "
                             "(pip install tomli), or give the settings as a .json file") from None
    return tomllib.loads(text)


def _read_file(path: str) -> dict:
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise ValueError(f"--simulate {path!r}: {exc.strerror}") from None
    try:
        if path.endswith(".json"):
            data = json.loads(raw)
        else:
            data = _toml_loads(raw.decode("utf-8"), path)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"--simulate {path!r}: not valid {'JSON' if path.endswith('.json') else 'TOML'}: "
                         f"{exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"--simulate {path!r}: expected a table of settings")
    unknown = sorted(set(data) - set(_FILE_KEYS))
    if unknown:
        raise ValueError(f"--simulate {path!r}: unknown key(s) {', '.join(unknown)} "
                         f"(known: network, faults, seed, trace_dir)")
    return data


def _as_spec(value, what: str) -> str:
    """A spec string, or a table {key: value} written as 'key=value,...'."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items())
    raise ValueError(f"--simulate: {what} must be a string or a table, got {value!r}")


def from_args(args: argparse.Namespace, world_size: int | None) -> SimulationConfig | None:
    """The validated settings, or None when no simulation option was given."""
    given = [args.simulate, args.simulate_network, args.inject_fault, args.fault_seed, args.trace_dir]
    if all(v is None for v in given):
        return None
    data = _read_file(args.simulate) if args.simulate else {}
    network = args.simulate_network if args.simulate_network is not None else data.get("network")
    faults = data.get("faults", data.get("fault", []))
    if isinstance(faults, (str, dict)):
        faults = [faults]
    if not isinstance(faults, list):
        raise ValueError(f"--simulate: faults must be a list, got {faults!r}")
    faults = [_as_spec(f, "a fault") for f in faults] + list(args.inject_fault or [])
    seed_text = args.fault_seed if args.fault_seed is not None else data.get("seed", 0)
    trace_dir = args.trace_dir if args.trace_dir is not None else data.get("trace_dir")

    spec = load_spec_module()
    try:
        seed = spec.parse_seed(seed_text)
        cfg = SimulationConfig(seed=seed)
        if network is not None:
            cfg.network = _as_spec(network, "network")
            cfg.network_text = spec.parse_network(cfg.network).describe()
        parsed = [spec.parse_fault(f) for f in faults]
        cfg.faults = [f.text for f in parsed]
        cfg.fault_lines = [f.describe() for f in spec.resolve_faults(parsed, seed, world_size)]
    except spec.SpecError as exc:
        raise ValueError(str(exc)) from None
    if trace_dir is not None:
        if not isinstance(trace_dir, str) or not trace_dir.strip():
            raise ValueError(f"--trace-dir: expected a directory, got {trace_dir!r}")
        cfg.trace_dir = os.path.abspath(trace_dir)
        if os.path.exists(cfg.trace_dir) and not os.path.isdir(cfg.trace_dir):
            raise ValueError(f"--trace-dir {trace_dir!r} exists and is not a directory")
    return cfg
