"""cluster.yaml: valid against Ray's own cluster schema, and no port open to the world."""

from __future__ import annotations

from pathlib import Path

import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

CLUSTER_YAML = Path(__file__).resolve().parents[2] / "cluster.yaml"
PRIVATE_PORTS = (8265, 6379, 10001)


def _load() -> dict:
    return yaml.safe_load(CLUSTER_YAML.read_text())


def test_cluster_yaml_validates_against_rays_schema() -> None:
    config = _load()
    # prepare_config fills Ray's defaults (as `ray up` does), then the JSON schema check runs;
    # both raise (jsonschema.ValidationError / ValueError) on an invalid file.
    validate_config(prepare_config(config))
    assert config["provider"]["type"] == "aws"
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    gpu = [t for name, t in types.items() if name != config["head_node_type"]]
    assert "GPU" not in head.get("resources", {}) and gpu
    assert any(t["node_config"]["InstanceType"].startswith(("g5", "g4dn", "p3", "p4")) for t in gpu)
    assert all(t["max_workers"] > t.get("min_workers", 0) for t in gpu)  # autoscaling
    assert any("pip install" in c and "samplegen" in c for c in config["setup_commands"])
    # Trials checkpoint where they run: every node mounts the shared folder the jobs are given.
    assert any("mount -t nfs4" in c and "/mnt/shared" in c for c in config["setup_commands"])
    header = CLUSTER_YAML.read_text().split("cluster_name:")[0]
    assert "--out /mnt/shared/" in header and "--storage /mnt/shared/" in header


def test_no_ingress_rule_opens_private_ports_to_the_world() -> None:
    config = _load()
    rules = config["provider"].get("security_group", {}).get("IpPermissions", [])
    for rule in rules:
        world = any(r.get("CidrIp") == "0.0.0.0/0" for r in rule.get("IpRanges", []))
        world |= any(r.get("CidrIpv6") == "::/0" for r in rule.get("Ipv6Ranges", []))
        if not world:
            continue
        lo, hi = rule.get("FromPort", -1), rule.get("ToPort", -1)
        assert rule.get("IpProtocol") != "-1", rule
        for port in PRIVATE_PORTS:
            assert not (lo <= port <= hi), f"port {port} open to the world: {rule}"
    # Ray's default security group would open SSH to 0.0.0.0/0: every node names its own group.
    for node_type in config["available_node_types"].values():
        assert node_type["node_config"].get("SecurityGroupIds"), node_type
    # The dashboard / Jobs API binds to loopback on the head (reached through `ray dashboard`).
    start = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in start
    # `ray job stop` leaves a study's driver time to save (tests/platform/test_jobs.py).
    for commands in ("head_start_ray_commands", "worker_start_ray_commands"):
        assert "RAY_JOB_STOP_WAIT_TIME_S=60 " in " ".join(config[commands])
    assert "0.0.0.0" not in CLUSTER_YAML.read_text().split("cluster_name:")[1]


def test_a_study_on_the_cluster_before_its_workers_are_up_runs_as_many_trials_as_it_will_hold(
    tmp_path: Path,
) -> None:
    from samplegen.platform.presets import get_preset
    from samplegen.platform.resources import TrialResources, largest_cluster, trials_at_once

    # `ray up` leaves the filled-in config on the head, where the jobs run.
    bootstrap = tmp_path / "ray_bootstrap_config.yaml"
    bootstrap.write_text(yaml.safe_dump(prepare_config(_load())))
    largest = largest_cluster(bootstrap)
    assert largest is not None and (largest["CPU"], largest["GPU"]) == (32.0, 8.0)
    full = get_preset("full")
    trial = TrialResources(full.cpus_per_trial, full.gpus_per_trial)
    head_only = {"CPU": 0.0}  # the head keeps trials off itself, and no GPU worker is up yet
    assert trials_at_once(trial, head_only) == 1
    assert trials_at_once(trial, head_only, largest) == 32  # 8 GPUs, 4 trials on each
    # A config that does not say what its workers hold tells nothing.
    vague = prepare_config(_load())
    vague["available_node_types"]["gpu_worker"]["resources"] = {}
    bootstrap.write_text(yaml.safe_dump(vague))
    assert largest_cluster(bootstrap) is None
    assert largest_cluster(tmp_path / "absent.yaml") is None
