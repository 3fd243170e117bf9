"""Kubernetes without a cluster: PET_* defaults, the PyTorchJob manifest (offline)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from _digits import child_env
from disttorch_launcher.cli import build_parser, config_from_args
from disttorch_launcher.engines.k8s import apply_pet_defaults, to_yaml

yaml = pytest.importorskip("yaml", reason="the manifest test parses YAML with PyYAML")


def _config(argv, env):
    parser = build_parser()
    used = apply_pet_defaults(parser, env)
    cfg, _ = config_from_args(parser.parse_args(argv), env)
    return cfg, used


def test_pet_variables_are_option_defaults_as_torchrun_reads_them():
    env = {"PET_NNODES": "4", "PET_NPROC_PER_NODE": "3", "PET_NODE_RANK": "2",
           "PET_MASTER_ADDR": "job-master-0", "PET_MASTER_PORT": "23456", "PET_MAX_RESTARTS": "2",
           "PET_RDZV_CONF": "join_timeout=60"}
    cfg, used = _config(["train.py"], env)
    assert (cfg.max_nodes, cfg.nproc_per_node, cfg.node_rank, cfg.master_addr, cfg.master_port,
            cfg.max_restarts, cfg.join_timeout) == (4, 3, 2, "job-master-0", 23456, 2, 60.0)
    assert sorted(used) == sorted(env)
    # the command line wins over the pod's variables
    cfg, _ = _config(["--nproc-per-node", "1", "--max-restarts", "0", "train.py"], env)
    assert (cfg.nproc_per_node, cfg.max_restarts, cfg.max_nodes) == (1, 0, 4)
    cfg, _ = _config(["train.py"], {"PET_RDZV_ID": "job-17", "PET_NNODES": "2", "PET_MASTER_ADDR": "m"})
    assert cfg.run_id == "job-17"
    cfg, _ = _config(["train.py"], {"PET_STANDALONE": "true"})
    assert cfg.master_addr == "127.0.0.1" and cfg.max_nodes == 1


@pytest.mark.parametrize("env, message", [
    ({"PET_MAX_RESTARTS": "many"}, "PET_MAX_RESTARTS='many' is not a valid --max-restarts"),
    ({"PET_STANDALONE": "perhaps"}, "PET_STANDALONE='perhaps': expected 1/0 or true/false"),
    ({"PET_SCHEDULER": "slurm"}, "PET_SCHEDULER='slurm': expected one of auto, none"),
])
def test_bad_pet_values_are_refused_naming_the_variable(env, message):
    with pytest.raises(ValueError) as info:
        apply_pet_defaults(build_parser(), env)
    assert str(info.value) == message


def test_the_launcher_runs_unchanged_in_a_pod(tmp_path):
    script = tmp_path / "where.py"
    script.write_text("import os\nprint('rank', os.environ['RANK'], 'of', os.environ['WORLD_SIZE'])\n")
    done = subprocess.run([sys.executable, "-m", "disttorch_launcher", str(script)], cwd=tmp_path,
                          env=child_env(PET_NPROC_PER_NODE="2", PET_STANDALONE="1"),
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert sorted(line.split(": ", 1)[1] for line in done.stdout.splitlines()) == [
        "rank 0 of 2", "rank 1 of 2"]


def _manifest(*extra):
    done = subprocess.run([sys.executable, "-m", "disttorch_launcher", "--print-k8s-manifest", "--image",
                           "registry.example/train:1", "--nnodes", "4", "--nproc-per-node", "8",
                           *extra, "train.py", "--epochs", "3"],
                          env=child_env(), capture_output=True, text=True, timeout=60, check=False)
    return done


def test_print_k8s_manifest_is_a_pytorchjob_with_master_workers_secret_and_ports():
    done = _manifest("--cpus-per-rank", "0.5")
    assert done.returncode == 0, done.stderr
    assert "kubectl create secret generic disttorch-train-secret" in done.stdout
    job = yaml.safe_load(done.stdout)
    assert (job["apiVersion"], job["kind"]) == ("kubeflow.org/v1", "PyTorchJob")
    assert job["spec"]["nprocPerNode"] == "8"
    specs = job["spec"]["pytorchReplicaSpecs"]
    assert sorted(specs) == ["Master", "Worker"]
    assert (specs["Master"]["replicas"], specs["Worker"]["replicas"]) == (1, 3)
    for spec in specs.values():
        (container,) = spec["template"]["spec"]["containers"]
        assert container["name"] == "pytorch" and container["image"] == "registry.example/train:1"
        assert container["command"] == ["disttorch-run", "--nnodes", "4", "--nproc-per-node", "8",
                                        "--max-restarts", "0", "train.py", "--epochs", "3"]
        (secret,) = [e for e in container["env"] if e["name"] == "DISTTORCH_SECRET"]
        assert secret == {"name": "DISTTORCH_SECRET", "valueFrom": {"secretKeyRef": {
            "name": "disttorch-train-secret", "key": "secret"}}}
        assert container["resources"]["requests"] == container["resources"]["limits"] == {"cpu": "4"}
        assert [(p["name"], p["containerPort"]) for p in container["ports"]] == [
            ("pytorchjob-port", 29500), ("disttorch-ctl", 29501)]


def test_manifest_without_image_is_refused():
    done = subprocess.run([sys.executable, "-m", "disttorch_launcher", "--print-k8s-manifest", "train.py"],
                          env=child_env(), capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2 and "--print-k8s-manifest needs --image IMAGE" in done.stderr


def test_to_yaml_round_trips_through_a_yaml_parser():
    value = {"a": "8", "b": 8, "c": [1, "x: y", {"d": True, "e": []}], "f": {}, "g": 'q"uote'}
    assert yaml.safe_load(to_yaml(value)) == value
