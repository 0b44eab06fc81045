"""--backend ray beyond what the backend-parametrized tests check (learning: test_learning.py; killed actors,
Ctrl-C, SIGTERM, a killed learner: test_reliability.py): a lost node's actor comes back on the surviving node
and the run reaches its target; a Ray cluster the run joined stays up with nothing of ours in it; a wrong
address is a one-line error."""

import json
import os
import subprocess
import sys
import time

import pytest

from conftest import ROOT, start_cli, wait_for, wait_training

pytest.importorskip("ray", reason="Ray is not installed (the ray extra: pip install -e '.[ray]')")


@pytest.mark.parametrize("address, says", [
    ("127.0.0.1:1", "could not join the Ray cluster at 127.0.0.1:1: nothing answers there"),
    ("nonsense", "--ray-address must be 'auto' or HOST:PORT of the cluster's head, got 'nonsense'")])
def test_bad_ray_address_is_one_line_error_before_the_run_directory(tmp_path, address, says):
    """Both were found after the banner, in a run directory made already, which then refused the corrected
    command ('holds a run already')."""
    proc = subprocess.run([sys.executable, "-m", "actorlearner", "train", "--backend", "ray", "--ray-address",
                           address, "--max-seconds", "5", "--run-dir", str(tmp_path / "run")], capture_output=True,
                          text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"actorlearner: error: {says}") and proc.stdout == "", lines
    assert not (tmp_path / "run").exists()


def test_a_cluster_that_cannot_be_joined_leaves_no_run_directory(tmp_path, monkeypatch):
    """A head that answers but is no Ray head of ours (another service, another Ray version) fails in
    ray.init, after the run directory is made: a fresh run's directory is removed and its lock released."""
    from actorlearner import Config, ConfigError, train
    from actorlearner.ray_cluster import RayCluster

    def refuse(self):
        raise ConfigError("could not join the Ray cluster at 127.0.0.1:6379: Failed to connect")

    monkeypatch.setattr(RayCluster, "start", refuse)
    cfg = Config(backend="ray", max_steps=1000, run_dir=str(tmp_path / "run"))
    for _ in range(2):  # the second attempt is not refused by the first one's directory or lock
        with pytest.raises(ConfigError, match="could not join"):
            train(cfg)
        assert not (tmp_path / "run").exists()


def test_a_run_without_an_address_starts_its_own_instance_whatever_ray_address_says(tmp_path):
    """ray.init() with no address joins the instance RAY_ADDRESS or /tmp/ray/ray_current_cluster names (`ray
    start` and ray.cluster_utils write that file, and leave it behind). A run given no --ray-address is meant
    to be alone: it neither shares a cluster it was not told about nor fails on one that is gone."""
    env = dict(os.environ, RAY_ADDRESS="127.0.0.1:1")  # nothing answers there
    proc = subprocess.run([sys.executable, "-m", "actorlearner", "train", "--backend", "ray", "--num-actors", "1",
                           "--max-steps", "20000", "--eval-every-s", "0", "--run-dir", str(tmp_path / "run")],
                          capture_output=True, text=True, timeout=150, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "max_steps"


@pytest.fixture
def two_node_cluster():
    """Two Ray nodes on this machine (ray.cluster_utils): a head with two CPUs, a worker with one, and a node
    health check as a cluster would set it for quick failover (a lost node is declared dead after ~2 s)."""
    from ray.cluster_utils import Cluster

    from actorlearner.ray_cluster import remove_session

    config = {"health_check_period_ms": 500, "health_check_failure_threshold": 4}
    assert os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0"  # conftest.py: everything on loopback
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "_system_config": config,
                                                            "node_ip_address": "127.0.0.1"})
    session = cluster.head_node.get_session_dir_path()
    try:
        worker = cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
        cluster.wait_for_nodes()
        yield cluster, worker
    finally:
        cluster.shutdown()
        remove_session(session)  # Ray leaves it (logs, sockets), and a test leaves nothing


def test_lost_node_gets_its_actor_replaced_on_the_other_node(tmp_path, two_node_cluster):
    cluster, worker = two_node_cluster
    run_dir = tmp_path / "run"
    # A step budget, not a time one (it had 25 s): beside another test, a run on half the CPU did not solve in time.
    proc = start_cli(run_dir, "--seed", "1", "--ray-address", cluster.address, "--num-actors", "2",
                     "--envs-per-actor", "32", "--max-steps", "2000000", "--max-seconds", "150", "--no-stop-at-target",
                     "--eval-every-s", "0", backend="ray")
    try:
        wait_training(run_dir)
        metrics = run_dir / "metrics.jsonl"
        cluster.remove_node(worker, allow_graceful=False)  # as a machine that goes away: no goodbye
        lost_at = time.monotonic()

        def replaced_and_training():
            rows = [json.loads(line) for line in metrics.read_text().splitlines()]
            after = [r for r in rows if r["actor_restarts"] >= 1]
            return len(after) >= 2 and after[-1]["env_steps"] > after[0]["env_steps"]

        recovered = wait_for(replaced_and_training, 60)
        recovery_s = time.monotonic() - lost_at
        out, _ = proc.communicate(timeout=150)
    finally:
        proc.kill()
    assert proc.returncode == 0, out[-3000:]
    assert "ray: 2 actors on 2 nodes" in out
    assert recovered, out[-3000:]
    print(f"node lost -> replaced actor delivering again: {recovery_s:.1f} s")
    head = cluster.head_node.node_id
    assert f"now runs on node {head[:8]}" in out, out[-3000:]  # the replacement went to the surviving node
    summary = json.loads((run_dir / "summary.json").read_text())
    # It reached the target (confirmed), and trained on to --max-steps with the replaced actor.
    assert summary["solved"] and summary["status"] == "max_steps" and summary["actor_restarts"] >= 1, summary
    # The cluster we joined is still up, with every CPU free: nothing of ours holds one.
    import ray

    ray.init(address=cluster.address)
    try:
        assert wait_for(lambda: ray.available_resources().get("CPU", 0) == ray.cluster_resources()["CPU"], 10)
    finally:
        ray.shutdown()
