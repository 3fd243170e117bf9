"""CPUs a process may use: cgroup v2 cpu.max and v1 cfs quota, on fabricated /proc and /sys trees."""
import pytest

from disttorch_launcher.cpu_quota import cgroup_cpu_limit, usable_cpus


def _tree(tmp_path, cgroup_line, files):
    (tmp_path / "proc/self").mkdir(parents=True)
    (tmp_path / "proc/self/cgroup").write_text(cgroup_line + "\n")
    for rel, text in files.items():
        path = tmp_path / "sys/fs/cgroup" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
    return str(tmp_path)


def test_cgroup_v2_quota_of_this_cgroup_and_its_ancestors(tmp_path):
    root = _tree(tmp_path, "0::/kubepods/pod1/ctr", {
        "cpu.max": "max 100000",
        "kubepods/cpu.max": "max 100000",
        "kubepods/pod1/cpu.max": "250000 100000",   # the pod's limit: 2.5 CPUs
        "kubepods/pod1/ctr/cpu.max": "max 100000",
    })
    assert cgroup_cpu_limit(root) == 2.5
    assert usable_cpus(root, affinity=64) == 3       # rounded up
    assert usable_cpus(root, affinity=2) == 2        # the affinity mask is smaller


def test_cgroup_v1_cfs_quota(tmp_path):
    root = _tree(tmp_path, "4:cpu,cpuacct:/docker/abc\n3:memory:/docker/abc", {
        "cpu,cpuacct/cpu.cfs_quota_us": "-1",
        "cpu,cpuacct/cpu.cfs_period_us": "100000",
        "cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "50000",
        "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000",
    })
    assert cgroup_cpu_limit(root) == 0.5
    assert usable_cpus(root, affinity=16) == 1       # never below one


@pytest.mark.parametrize("files", [{"cpu.max": "max 100000"}, {}])
def test_no_quota_leaves_the_affinity_mask(tmp_path, files):
    root = _tree(tmp_path, "0::/", files)
    assert cgroup_cpu_limit(root) is None
    assert usable_cpus(root, affinity=6) == 6
