"""The network simulator against the rig: the same DDP job (examples/simulate_cluster.py, an MLP
whose 2.7 MB gradient all-reduce dominates a step at 1 Gbit) on 2 test hosts with 1 Gbit links,
and on one host with `--simulate-network bandwidth=1gbit`, must take the same time per step
within 15%.

Both sides run plain (no CURVE: a job on one host never encrypts) and without DDP overlap (auto
decides differently for 1 rank per host and 2 ranks on one host). The machine is shared and its
load changes from second to second, so the two sides alternate (three jobs each) and each side's
figure is the median of its nine 10-step windows (the fastest window proved too noisy a figure)."""
from __future__ import annotations

import re
import statistics

from _cluster_jobs import REPO

SCRIPT = [REPO / "examples" / "simulate_cluster.py", "--steps", "40", "--report", "10"]
SAME = {"DISTTORCH_DDP_OVERLAP": "off", "DISTTORCH_CURVE": "0"}


def _windows_ms(out: str) -> list[float]:
    found = [float(x) for x in re.findall(r"steps +\d+-\d+ +([\d.]+) ms/step", out)]
    assert len(found) == 4, out[-3000:]
    return found[1:]  # the first window holds connection set-up and warm-up


def test_simulated_1gbit_predicts_the_step_time_on_two_hosts_with_1gbit_links(jobs):
    measured, predicted = [], []
    for _ in range(3):
        real = jobs.run("testhost1", ["--hosts", "testhost1:1,testhost2:1", *SCRIPT], **SAME)
        assert real.returncode == 0, real.output[-3000:]
        measured += _windows_ms(real.output)
        sim = jobs.run("testhost1", ["--nproc-per-node", "2", "--simulate-network", "bandwidth=1gbit", *SCRIPT],
                       **SAME)
        assert sim.returncode == 0, sim.output[-3000:]
        predicted += _windows_ms(sim.output)
    m, p = statistics.median(measured), statistics.median(predicted)
    print(f"\nsimulate_cluster.py, 2 ranks, 1 Gbit: measured on 2 test hosts {m:.1f} ms/step "
          f"(windows {', '.join(f'{x:.1f}' for x in measured)}); simulated on one host {p:.1f} ms/step "
          f"(windows {', '.join(f'{x:.1f}' for x in predicted)}); error {100 * (p - m) / m:+.1f}%")
    assert abs(p - m) <= 0.15 * m
    assert jobs.wait_until_idle() == {}
