"""Across test hosts (tools/testcluster, root only): all-reduce and DDP, disttorch and PyTorch gloo
side by side in one run, with the link's bound printed.

    sudo python benchmarks/crosshost.py [--rate 1gbit] [--mtu 1500] [--mib 16] [--layouts 2x1,2x2]
                                        [--repeats 3] [--curve on|off] [--no-ddp] [--no-torch]
                                        [--no-simulator] [--run-id ID]

disttorch encrypts with CURVE by default when a job spans hosts; gloo never encrypts, so
`--curve off` is the like-for-like comparison and `--curve on` shows what encryption costs.

It makes a rig of 2 hosts whose links are shaped to --rate in both directions (or uses the rig
--run-id), starts disttorch with `disttorch-run --hosts` from testhost1 (testhost2 through ssh) and
PyTorch with torchrun on each host (static rendezvous, GLOO_SOCKET_IFNAME=eth0), alternating the
two `--repeats` times, and reports the median over jobs of each job's median time.

Bounds: a ring all-reduce of S bytes over n ranks sends 2(n-1)/n * S through each rank's link, so
it takes at least 2(n-1)/n * S / rate. disttorch's hierarchical all-reduce (shared memory inside a
host, ring among hosts) needs the same with n = hosts; gloo's flat ring over 2 hosts x 2 ranks
crosses each host's link with 2(n-1)/n * S for n = 4 (1.5 S).

Targets (issue 13): all-reduce at 16 MiB >= 0.95 of the link bound for 2x1 and 2x2; DDP (MLP
784-512-512-10, batch 256 per rank, 2 hosts x 2 ranks, 1 Gbit) >= 1.4x PyTorch DDP's samples/s.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tools.testcluster import Cluster  # noqa: E402 (needs REPO on sys.path)
from tools.testcluster.rig import rate_bits  # noqa: E402

WORKER = REPO / "benchmarks" / "_crosshost_worker.py"


def tcp_share(mtu: int) -> float:
    """The share of a tbf-shaped veth link's bytes that is TCP data: the MSS (MTU less 20 bytes of
    IP, 20 of TCP, 12 of timestamps) in a frame of MTU + 14 bytes of Ethernet header; at 1500,
    1448 of 1514."""
    return (mtu - 52) / (mtu + 14)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DISTTORCH_", "TORCHELASTIC_", "SLURM_", "OMPI_"))
           and k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
               DISTTORCH_PROGRESS="0", PYTHONPATH=os.pathsep.join(
                   filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    env.update(extra)
    return env


def _result(output: str, what: str) -> dict:
    for line in output.splitlines():
        if "RESULT " in line:
            return json.loads(line.split("RESULT ", 1)[1])
    raise RuntimeError(f"{what} printed no result:\n{output[-3000:]}")


def run_disttorch(rig: Cluster, per_host: int, args: list[str], extra_env: dict) -> dict:
    hosts = ",".join(f"{h.name}:{per_host}" for h in rig.hosts)
    done = rig.run("testhost1", [sys.executable, "-m", "disttorch_launcher", "--hosts", hosts,
                                 str(WORKER), "disttorch", *args],
                   cwd=str(REPO), env=_env(**extra_env), timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"disttorch job failed:\n{(done.stdout + done.stderr)[-3000:]}")
    return _result(done.stdout + done.stderr, "disttorch")


def run_torch(rig: Cluster, per_host: int, args: list[str], port: int) -> dict:
    master = rig.hosts[0].address
    procs = [rig.popen(h.name, [sys.executable, "-m", "torch.distributed.run",
                                "--nnodes", str(len(rig.hosts)), "--node-rank", str(i),
                                "--nproc-per-node", str(per_host), "--master-addr", master,
                                "--master-port", str(port), str(WORKER), "torch", *args],
                       cwd=str(REPO), env=_env(GLOO_SOCKET_IFNAME="eth0"),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i, h in enumerate(rig.hosts)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    if any(p.returncode for p in procs):
        reasons = [line for o in outputs for line in o.splitlines()
                   if "what()" in line or "Error" in line or "exitcode" in line]
        raise RuntimeError("torchrun job failed:\n" + "\n".join(reasons[-6:]))
    return _result(outputs[0], "torchrun")


def _windows_ms(output: str) -> list[float]:
    """The 10-step windows' ms/step after the first (connection set-up and warm-up)."""
    found = re.findall(r"steps +\d+-\d+ +([\d.]+) ms/step", output)
    if len(found) < 2:
        raise RuntimeError(f"simulate_cluster.py printed no step time:\n{output[-3000:]}")
    return [float(x) for x in found[1:]]


def simulator_versus_rig(rig: Cluster, rate: str, overlap: str, curve: str, repeats: int) -> None:
    """examples/simulate_cluster.py on 2 test hosts (1 rank each) and simulated on one host.

    Both sides get the same DISTTORCH_DDP_OVERLAP and DISTTORCH_CURVE (a job on one host would
    otherwise run plain while the one across hosts encrypts by default)."""
    script = [str(REPO / "examples" / "simulate_cluster.py"), "--steps", "40", "--report", "10"]
    env = _env(DISTTORCH_DDP_OVERLAP=overlap, DISTTORCH_CURVE="1" if curve == "on" else "0")
    measured, predicted = [], []
    for _ in range(repeats):
        real = rig.run("testhost1", [sys.executable, "-m", "disttorch_launcher", "--hosts",
                                     "testhost1:1,testhost2:1", *script],
                       cwd=str(REPO), env=env, timeout=300)
        measured += _windows_ms(real.stdout + real.stderr)
        sim = rig.run("testhost1", [sys.executable, "-m", "disttorch_launcher", "--nproc-per-node", "2",
                                    "--simulate-network", f"bandwidth={rate}", *script],
                      cwd=str(REPO), env=env, timeout=300)
        predicted += _windows_ms(sim.stdout + sim.stderr)
    m, q = statistics.median(measured), statistics.median(predicted)
    print(f"\nsimulator vs rig: examples/simulate_cluster.py (batch 32, median of steps 11-40 in 10-step windows), "
          f"2 ranks, {rate}, "
          f"DISTTORCH_DDP_OVERLAP={overlap}, DISTTORCH_CURVE={'1' if curve == 'on' else '0'}")
    print(f"  measured on 2 test hosts   {m:6.1f} ms/step  ({', '.join(f'{x:.1f}' for x in measured)})")
    print(f"  simulated on one host      {q:6.1f} ms/step  ({', '.join(f'{x:.1f}' for x in predicted)})")
    print(f"  prediction error {100 * (q - m) / m:+.0f}% (target within 15%)")


def _tolerant(run, *args) -> dict | None:
    """A reference job that fails is reported and left out of the medians, not fatal."""
    try:
        return run(*args)
    except RuntimeError as exc:
        print(f"  (a reference job failed and is left out: {str(exc).splitlines()[-1][:200]})")
        return None


def ring_bound(nbytes: int, n: int, rate: float) -> float:
    return 2 * (n - 1) / n * nbytes * 8 / rate


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rate", default="1gbit")
    p.add_argument("--mtu", type=int, default=1500,
                   help="the rig's MTU (1500, Ethernet's default, for every target figure; 9000: jumbo "
                        "frames, for information)")
    p.add_argument("--mib", type=float, default=16.0, help="all-reduce size in MiB")
    p.add_argument("--iters", type=int, default=8, help="timed all-reduces per job")
    p.add_argument("--layouts", default="2x1,2x2",
                   help="HOSTSxRANKS_PER_HOST, comma-separated; 'none' skips the all-reduce rows")
    p.add_argument("--repeats", type=int, default=3, help="jobs per system and row")
    p.add_argument("--ddp-steps", type=int, default=30)
    p.add_argument("--no-ddp", action="store_true")
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--no-simulator", action="store_true",
                   help="skip comparing examples/simulate_cluster.py on 2 hosts with its simulation")
    p.add_argument("--overlap", choices=["on", "off"], default="off",
                   help="DISTTORCH_DDP_OVERLAP for both sides of the simulator comparison")
    p.add_argument("--run-id", help="use this rig (made by `python -m tools.testcluster up 2`)")
    p.add_argument("--curve", choices=["on", "off"], default=None,
                   help="DISTTORCH_CURVE for disttorch's jobs: CURVE-encrypt all traffic or not "
                        "(default: disttorch's own, which encrypts across hosts; the simulator "
                        "comparison runs plain unless --curve on)")
    p.add_argument("--env", action="append", default=[], metavar="SETTING=VALUE",
                   help="a DISTTORCH_* setting for disttorch's jobs (repeatable), e.g. "
                        "DISTTORCH_HIER_CHUNK_BYTES=1048576")
    args = p.parse_args()
    if args.curve is not None:
        runtime = (REPO / "disttorch" / "distributed" / "_runtime.py").read_text()
        if "DISTTORCH_CURVE" not in runtime:
            p.error("--curve: this disttorch has no DISTTORCH_CURVE switch")
    extra_env = {} if args.curve is None else {"DISTTORCH_CURVE": "1" if args.curve == "on" else "0"}
    for item in args.env:
        name, eq, value = item.partition("=")
        if not eq or not name.startswith("DISTTORCH_"):
            p.error(f"--env: expected a DISTTORCH_ setting=VALUE, got {item!r}")
        extra_env[name] = value
    layouts = []
    for item in [] if args.layouts == "none" else args.layouts.split(","):
        hosts, _, ranks = item.partition("x")
        if hosts != "2" or not ranks.isdigit() or int(ranks) < 1:
            p.error(f"--layouts: expected 2xR (2 hosts, R ranks each), got {item!r}")
        layouts.append(int(ranks))

    owned = args.run_id is None
    rig = Cluster.up(2, rate=args.rate, owner_pid=os.getpid(), mtu=args.mtu) if owned \
        else Cluster.attach(args.run_id)
    share = tcp_share(rig.mtu)
    rate = rate_bits(rig.rate) if rig.rate else rate_bits(args.rate)
    nbytes = int(args.mib * 2 ** 20)
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    print(f"rig {rig.run_id}: 2 hosts, links {rig.rate} both ways, MTU {rig.mtu}; load average {' '.join(load)}; "
          f"{os.cpu_count()} cores")
    port = 29700
    try:
        for per_host in layouts:
            world = 2 * per_host
            hier = ring_bound(nbytes, 2, rate)
            flat = ring_bound(nbytes, world, rate) if per_host == 1 else 2 * (world - 1) / world \
                * nbytes * 8 / rate
            rows = {"disttorch": [], "gloo": []}
            for _ in range(args.repeats):
                rows["disttorch"].append(run_disttorch(
                    rig, per_host, ["allreduce", str(nbytes), str(args.iters)], extra_env)["seconds"])
                if not args.no_torch:
                    port += 1
                    gloo = _tolerant(run_torch, rig, per_host,
                                     ["allreduce", str(nbytes), str(args.iters)], port)
                    if gloo:
                        rows["gloo"].append(gloo["seconds"])
            print(f"\nall-reduce {args.mib:g} MiB, 2 hosts x {per_host} rank(s): link bound "
                  f"{hier * 1e3:.1f} ms (ring over hosts, n=2)"
                  + (f"; flat ring over {world} ranks {flat * 1e3:.1f} ms" if per_host > 1 else ""))
            print(f"  (tbf counts frames: TCP data is {rig.mtu - 52} of every {rig.mtu + 14} bytes, so even a "
                  f"perfect ring needs {hier * 1e3 / share:.1f} ms, {share:.3f} of the bound)")
            for name, times in rows.items():
                if not times:
                    continue
                t = statistics.median(times)
                print(f"  {name:9s} {t * 1e3:8.1f} ms  ({', '.join(f'{x * 1e3:.1f}' for x in times)})"
                      f"  {hier / t:5.2f} of the link bound  {nbytes * 8 / t / 1e9:5.2f} Gbit/s algbw")
            if rows["gloo"]:
                print(f"  disttorch / gloo speed: {statistics.median(rows['gloo']) / statistics.median(rows['disttorch']):.2f}x")
        if not args.no_ddp:
            rows = {"disttorch": [], "gloo": []}
            parts = {"disttorch": [], "gloo": []}  # the jobs' step breakdowns
            for _ in range(args.repeats):
                mine = run_disttorch(rig, 2, ["ddp", str(args.ddp_steps)], extra_env)
                rows["disttorch"].append(mine["samples_per_s"])
                parts["disttorch"].append(mine)
                if not args.no_torch:
                    port += 1
                    gloo = _tolerant(run_torch, rig, 2, ["ddp", str(args.ddp_steps)], port)
                    if gloo:
                        rows["gloo"].append(gloo["samples_per_s"])
                        parts["gloo"].append(gloo)
            print("\nDDP MLP 784-512-512-10, batch 256 per rank, 2 hosts x 2 ranks:")
            for name, values in rows.items():
                if values:
                    print(f"  {name:9s} {statistics.median(values):8.0f} samples/s  "
                          f"({', '.join(f'{v:.0f}' for v in values)})")
            for name, jobs in parts.items():
                if jobs:
                    step, compute, reduce = (statistics.median(j[k] for j in jobs) * 1e3
                                             for k in ("seconds", "compute_s", "all_reduce_s"))
                    print(f"  {name:9s} step {step:5.1f} ms = compute of the slowest rank {compute:5.1f} ms "
                          f"+ all-reduce of the {jobs[0]['gradient_bytes'] / 2**20:.2f} MiB of gradients alone "
                          f"{reduce:5.1f} ms {step - compute - reduce:+5.1f} ms (overlap hides: -, interplay costs: +)")
            if rows["gloo"]:
                print(f"  disttorch / PyTorch DDP: "
                      f"{statistics.median(rows['disttorch']) / statistics.median(rows['gloo']):.2f}x")
        if not args.no_simulator:
            simulator_versus_rig(rig, rig.rate or args.rate, args.overlap, args.curve or "off",
                                 args.repeats)
        with open("/proc/loadavg") as f:
            print(f"\nload average at the end: {' '.join(f.read().split()[:3])}")
    finally:
        if owned:
            rig.down()
    return 0


if __name__ == "__main__":
    t0 = time.perf_counter()
    code = main()
    print(f"({time.perf_counter() - t0:.0f} s)")
    sys.exit(code)
