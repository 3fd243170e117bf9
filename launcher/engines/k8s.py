"""Kubernetes: torchrun's PET_* variables as option defaults, and a PyTorchJob manifest.

Kubeflow's training operator starts one pod per node of a PyTorchJob and tells each pod where it
sits through `PET_NNODES`, `PET_NPROC_PER_NODE`, `PET_NODE_RANK`, `PET_MASTER_ADDR`,
`PET_MASTER_PORT`, ... . torchrun takes every option's default from `PET_<OPTION>` (the option's
name upper-cased, dashes as underscores); so does `disttorch-run`, which therefore runs unchanged
as a pod's command. An option on the command line still wins.

`--print-k8s-manifest --image IMG` prints such a PyTorchJob for the command: a Master and
`nnodes - 1` Workers running `disttorch-run ... script args` in container "pytorch" (the name the
operator looks for), the job secret read from a Kubernetes Secret (created once with the kubectl
command printed in the header; the secret itself is never printed), CPU requests equal to limits
(the Guaranteed QoS class: the quota then matches what the ranks size their threads to), and the
rendezvous and control ports. Stdlib only: the YAML is written by `to_yaml` below.
"""
from __future__ import annotations

import argparse
import json
import re
from collections.abc import Mapping

__all__ = ["apply_pet_defaults", "pytorchjob_manifest", "to_yaml", "print_manifest"]

# Options that make no sense as a pod-wide default (the entry point is positional; the others
# describe the machine running the command, not the pod).
_NOT_FROM_ENV = {"help", "training_script", "training_script_args", "print_k8s_manifest", "image",
                 "secret_stdin", "dry_run"}

# torchrun's own spelling where disttorch-run's option has another dest (--run-id is --rdzv-id).
_ALIASES = {"run_id": ("PET_RDZV_ID",)}


def apply_pet_defaults(parser: argparse.ArgumentParser, env: Mapping[str, str]) -> list[str]:
    """Sets each option's default from `PET_<DEST>` when present, converted and checked as the
    option itself would be; returns the variables used. Raises ValueError naming a bad one."""
    used = []
    for action in parser._actions:  # noqa: SLF001 - argparse offers no public iterator
        if not action.option_strings or action.dest in _NOT_FROM_ENV:
            continue
        names = ["PET_" + action.dest.upper(), *_ALIASES.get(action.dest, ())]
        name = next((n for n in names if n in env), None)
        if name is None:
            continue
        raw = env[name]
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):  # noqa: SLF001
            truthy = raw.strip().lower() in ("1", "true", "yes", "on")
            if raw.strip().lower() not in ("1", "true", "yes", "on", "0", "false", "no", "off", ""):
                raise ValueError(f"{name}={raw!r}: expected 1/0 or true/false")
            value = truthy if isinstance(action, argparse._StoreTrueAction) else not truthy  # noqa: SLF001
        elif action.type is not None:
            try:
                value = action.type(raw)
            except (TypeError, ValueError):
                raise ValueError(f"{name}={raw!r} is not a valid {action.option_strings[0]}") from None
        else:
            value = raw
        if action.choices is not None and value not in action.choices:
            raise ValueError(f"{name}={raw!r}: expected one of {', '.join(map(str, action.choices))}")
        parser.set_defaults(**{action.dest: value})
        used.append(name)
    return used


def _k8s_name(text: str) -> str:
    name = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:50]
    return name or "disttorch"


def pytorchjob_manifest(*, name: str, image: str, command: list[str], nnodes: int,
                        nproc_per_node: int, cpus_per_rank: float, master_port: int,
                        control_port: int, secret_name: str, gpus_per_rank: int = 0,
                        max_restarts: int = 0) -> dict:
    """The PyTorchJob (kubeflow.org/v1) running `command` on `nnodes` pods."""
    if nnodes < 1:
        raise ValueError(f"--nnodes: expected >= 1 for a manifest, got {nnodes}")
    if nproc_per_node < 1:
        raise ValueError(f"--nproc-per-node: expected >= 1 for a manifest, got {nproc_per_node}")
    if not image:
        raise ValueError("--print-k8s-manifest needs --image IMAGE (the container image to run)")
    cpu = cpus_per_rank * nproc_per_node
    cpu_text = str(int(cpu)) if float(cpu).is_integer() else f"{int(cpu * 1000)}m"
    resources = {"cpu": cpu_text}
    if gpus_per_rank:
        resources["nvidia.com/gpu"] = str(gpus_per_rank * nproc_per_node)

    def replica(count: int) -> dict:
        return {
            "replicas": count,
            "restartPolicy": "OnFailure",
            "template": {"spec": {"containers": [{
                "name": "pytorch",
                "image": image,
                "command": command,
                "env": [
                    {"name": "DISTTORCH_SECRET",
                     "valueFrom": {"secretKeyRef": {"name": secret_name, "key": "secret"}}},
                    {"name": "PYTHONUNBUFFERED", "value": "1"},
                ],
                "ports": [
                    {"name": "pytorchjob-port", "containerPort": master_port, "protocol": "TCP"},
                    {"name": "disttorch-ctl", "containerPort": control_port, "protocol": "TCP"},
                ],
                "resources": {"requests": dict(resources), "limits": dict(resources)},
            }]}},
        }

    specs = {"Master": replica(1)}
    if nnodes > 1:
        specs["Worker"] = replica(nnodes - 1)
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "disttorch-run"}},
        "spec": {
            "nprocPerNode": str(nproc_per_node),
            "runPolicy": {"backoffLimit": max_restarts, "cleanPodPolicy": "Running"},
            "pytorchReplicaSpecs": specs,
        },
    }


def _scalar(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(str(value))  # a JSON string is a valid YAML double-quoted scalar


def to_yaml(value, indent: int = 0) -> str:
    """Block-style YAML of dicts, lists and scalars (strings always quoted: '8' stays a string)."""
    pad = " " * indent
    lines = []
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, (dict, list)) and item:
                lines.append(f"{pad}{key}:")
                lines.append(to_yaml(item, indent + 2))
            else:
                lines.append(f"{pad}{key}: {_scalar(item) if not isinstance(item, (dict, list)) else '{}' if isinstance(item, dict) else '[]'}")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, (dict, list)) and item:
                body = to_yaml(item, indent + 2).splitlines()
                lines.append(f"{pad}- {body[0].lstrip()}")
                lines.extend(body[1:])
            else:
                lines.append(f"{pad}- {_scalar(item)}")
    else:
        lines.append(pad + _scalar(value))
    return "\n".join(lines)


def print_manifest(cfg, args, *, default_port: int) -> str:
    """The text `disttorch-run --print-k8s-manifest ...` prints: a header comment with the
    kubectl command that creates the Secret, then the PyTorchJob."""
    nnodes = cfg.max_nodes
    master_port = cfg.master_port or default_port
    control_port = cfg.control_port or master_port + 1
    name = _k8s_name(args.job_name or f"disttorch-{cfg.entrypoint.rsplit('/', 1)[-1].rsplit('.', 1)[0]}")
    secret_name = f"{name}-secret"
    command = ["disttorch-run", "--nnodes", str(nnodes), "--nproc-per-node", str(cfg.nproc_per_node),
               "--max-restarts", str(cfg.max_restarts)]
    if cfg.run_module:
        command.append("-m")
    if cfg.no_python:
        command.append("--no-python")
    command += [cfg.entrypoint, *cfg.entrypoint_args]
    manifest = pytorchjob_manifest(
        name=name, image=args.image, command=command, nnodes=nnodes,
        nproc_per_node=cfg.nproc_per_node, cpus_per_rank=args.cpus_per_rank,
        gpus_per_rank=int(args.gpus_per_rank), master_port=master_port,
        control_port=control_port, secret_name=secret_name, max_restarts=cfg.max_restarts)
    header = [
        f"# PyTorchJob for: {' '.join(command)}",
        "# The pods read the job secret from a Kubernetes Secret; create it once with:",
        f"#   kubectl create secret generic {secret_name} --from-literal=secret=$(openssl rand -hex 32)",
        "# The operator gives each pod PET_NNODES, PET_NODE_RANK, PET_MASTER_ADDR, PET_MASTER_PORT,",
        "# which disttorch-run takes as defaults (as torchrun does).",
    ]
    return "\n".join(header) + "\n" + to_yaml(manifest) + "\n"
