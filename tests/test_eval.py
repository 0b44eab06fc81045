"""What a finished run offers: `actorlearner eval` (returns, videos) and TensorBoard event files."""

import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest

from actorlearner import Config, train
from actorlearner.config import ConfigError
from conftest import ROOT, wait_for


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("trained") / "run")
    train(Config(serial=True, seed=1, max_steps=60_000, eval_every_s=0.2, eval_episodes=2, log_every_s=0.1,
                 run_dir=path))
    return path


def eval_cli(*args):
    return subprocess.run([sys.executable, "-m", "actorlearner", "eval", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


def test_eval_prints_returns_and_writes_videos(run_dir, tmp_path):
    from actorlearner import evaluate
    from actorlearner.reporting import fmt_return

    out = eval_cli(run_dir, "--episodes", "2", "--deterministic", "--video", str(tmp_path / "ep.mp4"))
    assert out.returncode == 0, out.stderr
    assert "CartPole-v1, final weights, deterministic: return" in out.stdout and "over 2 episodes" in out.stdout
    # The Python API's evaluate plays the same episodes (same seeds) and gives the same figures.
    played = evaluate(run_dir, 2, deterministic=True)
    said = f"return {fmt_return(played['mean_return'])} ± {fmt_return(played['std_return'])} over 2 episodes"
    assert said in out.stdout, (played, out.stdout)
    short = evaluate(run_dir, 3, env_kwargs={"max_episode_steps": 20})  # a variant of the env: 20 steps at most
    assert len(short["returns"]) == 3 and max(short["lengths"]) <= 20 < max(played["lengths"]), short
    with pytest.raises(ConfigError, match="episodes must be >= 1"):
        evaluate(run_dir, 0)
    assert (tmp_path / "ep.mp4").stat().st_size > 1000
    # --which latest is played by test_damaged_weight_files_are_one_line_that_names_a_way_on.
    # A 100-step episode for the GIF: encoding 500 frames took 20 s alone, 100 take 5 s.
    out = eval_cli(run_dir, "--episodes", "1", "--which", "best", "--video", str(tmp_path / "best.gif"),
                   "--env-kwargs", "max_episode_steps=100")
    assert out.returncode == 0, out.stderr
    assert "best weights, sampled actions: return" in out.stdout
    assert (tmp_path / "best.gif").stat().st_size > 1000


def test_eval_of_a_run_with_no_final_weights_says_it_plays_the_newest_checkpoint(run_dir, tmp_path):
    """A run still going (or killed) has no policy.npz: the newest checkpoint is played, and the line says so
    instead of 'final weights'."""
    import shutil

    live = tmp_path / "live"
    shutil.copytree(run_dir, live)
    (live / "policy.npz").unlink()
    out = eval_cli(str(live), "--episodes", "1")
    assert out.returncode == 0, out.stderr
    assert ("CartPole-v1, the newest checkpoint's weights (no final ones: the run goes on, or was killed), sampled "
            "actions: return") in out.stdout


def test_a_run_killed_before_its_first_checkpoint_points_to_its_best_weights(run_dir, tmp_path):
    """A run SIGKILLed early has best.npz (its evaluations) but neither policy.npz nor a checkpoint: the error
    said only 'the run stopped before its first one', and the weights it had kept went unmentioned."""
    import shutil

    from actorlearner.loading import saved_weights

    killed = tmp_path / "killed"
    shutil.copytree(run_dir, killed)
    (killed / "policy.npz").unlink()
    shutil.rmtree(killed / "checkpoints")
    with pytest.raises(ConfigError, match=r"stopped before its first one; its best evaluation's weights are in "
                                          r"best.npz: --which best plays them$"):
        saved_weights(str(killed), "final")
    assert saved_weights(str(killed), "best")[0].size > 0
    (killed / "best.npz").unlink()
    with pytest.raises(ConfigError, match=r"stopped before its first one$"):
        saved_weights(str(killed), "latest")


def test_damaged_weight_files_are_one_line_that_names_a_way_on(run_dir, tmp_path):
    """A policy.npz or best.npz cut short (a full disk, a copy interrupted) was a BadZipFile traceback."""
    import shutil

    damaged = tmp_path / "damaged"
    shutil.copytree(run_dir, damaged)
    (damaged / "policy.npz").write_bytes((damaged / "policy.npz").read_bytes()[:300])
    (damaged / "best.npz").write_bytes(b"garbage")
    for which, name in (("final", "policy.npz"), ("best", "best.npz")):
        out = eval_cli(str(damaged), "--which", which, "--episodes", "1")
        lines = out.stderr.strip().splitlines()
        assert out.returncode == 2 and len(lines) == 1, out.stderr
        assert lines[0].startswith(f"actorlearner: error: {damaged / name} is corrupt or truncated (")
        assert lines[0].endswith("); --which latest uses the newest checkpoint instead")
    out = eval_cli(str(damaged), "--which", "latest", "--episodes", "1")
    assert out.returncode == 0, out.stderr


def test_a_loaded_policy_takes_one_observation_or_a_batch_and_names_the_shape_it_needs(run_dir):
    """policy.greedy(obs) with the env's own observation was a matmul error ('mismatch in its core dimension')."""
    from actorlearner import load_policy

    policy = load_policy(run_dir)
    batch = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    actions = policy.greedy(batch)
    assert actions.shape == (5,)
    assert [policy.greedy(o) for o in batch] == list(actions)  # one observation: one action, no batch axis
    assert policy.greedy(batch.tolist()).tolist() == actions.tolist()  # lists and float64 are converted
    assert policy.value(batch[0]).shape == () and policy.value(batch).shape == (5,)
    action, logp = policy.sample(batch[0])  # without an rng: the policy's own
    assert action in (0, 1) and logp < 0
    assert policy.step(batch[0], policy.initial_state(1))[0] == actions[0]
    with pytest.raises(ValueError, match=r"observations of shape \[1, 5\]: this policy takes one observation of "
                                         r"shape \[4\] or a batch \[B, 4\]"):
        policy.greedy(np.zeros((1, 5)))


def test_eval_stopped_by_ctrl_c_reports_the_episodes_played(run_dir):
    import os
    import re
    import signal

    proc = subprocess.Popen([sys.executable, "-m", "actorlearner", "eval", run_dir, "--episodes", "100000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)

    def cpu_s() -> float:  # the command's CPU time so far (/proc/PID/stat: utime and stime, in clock ticks)
        fields = open(f"/proc/{proc.pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    # By CPU time, not wall time, which a busy machine stretches: start-up (no TensorFlow) took 0.6 s of CPU and
    # 100 CartPole episodes 5.2 s more, so 2 s is past start-up and into the episodes.
    assert wait_for(lambda: proc.poll() is not None or cpu_s() >= 2.0, 120)
    assert proc.poll() is None, proc.stderr.read()[-3000:]
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert re.fullmatch(r"actorlearner: interrupted after \d+ of 100000 episodes: return [\d.]+ ± [\d.]+ over \d+ "
                        r"episodes, length \d+ ± \d+", err.strip()), err
    assert out == ""


def test_eval_on_a_terminal_shows_a_live_line_and_elsewhere_only_the_result(run_dir):
    import os
    import pty

    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "actorlearner", "eval", run_dir, "--episodes", "3"],
                            stdout=subprocess.PIPE, stderr=follower, text=True, cwd=ROOT)
    os.close(follower)
    seen = b""
    while True:  # until the child closes its end (EIO on Linux)
        try:
            chunk = os.read(leader, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    os.close(leader)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    terminal = seen.decode()
    assert "1/3 episodes: return" in terminal and "3/3 episodes: return" in terminal, terminal
    assert out.count("\n") == 1 and "over 3 episodes" in out  # stdout: the one result line
    piped = eval_cli(run_dir, "--episodes", "3")
    assert piped.returncode == 0 and piped.stderr == "", piped.stderr


def test_an_ascii_only_output_gets_question_marks_not_a_traceback(run_dir):
    """The result line's '±' was a UnicodeEncodeError under PYTHONIOENCODING=ascii (an ASCII-only terminal)."""
    import os

    out = subprocess.run([sys.executable, "-m", "actorlearner", "eval", run_dir, "--episodes", "2"],
                         capture_output=True, text=True, cwd=ROOT, timeout=120,
                         env={**os.environ, "PYTHONIOENCODING": "ascii"})
    assert out.returncode == 0 and " ? " in out.stdout and "return" in out.stdout, out.stderr


def test_eval_errors_are_one_line(tmp_path):
    out = eval_cli(str(tmp_path / "missing"))
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [f"actorlearner: error: {tmp_path / 'missing'}/config.json not "
                                               f"found: is {tmp_path / 'missing'} a run directory?"]
    out = eval_cli(str(tmp_path), "--video", "x.avi")
    assert out.returncode == 2 and "must end in .mp4 or .gif" in out.stderr
    # A config.json that is not one (a plot written over it, a disk that filled while it was written) was a
    # UnicodeDecodeError or JSONDecodeError traceback.
    config = tmp_path / "config.json"
    for text, says in ((b"\x89PNG\r\n\x1a\n", "not JSON: 'utf-8' codec can't decode"), (b'{"env": "Cart', "not JSON"),
                       (b"[1, 2]", "not a mapping"), (b'{"lr": 1}', "unknown")):
        config.write_bytes(text)
        for out in (eval_cli(str(tmp_path)), subprocess.run(
                [sys.executable, "-m", "actorlearner", "train", "--resume", str(tmp_path)], capture_output=True,
                text=True, cwd=ROOT, timeout=120)):
            lines = out.stderr.strip().splitlines()
            assert out.returncode == 2 and len(lines) == 1, out.stderr
            assert f"{config} is not a valid run config (" in lines[0] and says in lines[0], lines


@pytest.mark.parametrize("env_id, video, says", [
    ("faulty_envs:HangsOnCreate-v0", False, "was not made, reset and stepped once within 1 s"),
    ("faulty_envs:CartPoleHangsLater-v0", False, "was not made, reset or stepped within 1 s"),
    ("faulty_envs:CartPoleHangsInVideo-v0", True, "was not made, reset or stepped within 1 s")])
def test_an_env_that_hangs_in_eval_is_one_line_within_the_runs_wait_timeout(run_dir, tmp_path, env_id, video, says):
    """eval plays the env in its own process: without a limit an env that hangs hung it for good, where training
    bounds every env step by --wait-timeout-s. Here the run's config names an env that hangs when made or at its
    30th step (in the episodes, or only in the video's episode, after one good episode)."""
    import json
    import os
    import shutil
    import time

    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    cfg = json.loads((copy / "config.json").read_text())
    cfg.update(env=env_id, wait_timeout_s=1.0)
    (copy / "config.json").write_text(json.dumps(cfg))
    flags = ["--episodes", "1", "--video", str(tmp_path / "ep.gif")] if video else ["--episodes", "3"]
    t = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "actorlearner", "eval", str(copy), "--deterministic", *flags],
                         capture_output=True, text=True, cwd=ROOT, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(ROOT / "tests")})
    assert time.monotonic() - t < 60
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1, out.stderr
    assert lines[0] == f"actorlearner: error: the env {env_id} {says} (the run's --wait-timeout-s): does it hang?"
    if video:  # the episode before the video was played and reported
        assert out.stdout.startswith(f"{env_id}, final weights, deterministic: return "), out.stdout
        assert not list(tmp_path.glob("ep*.gif"))


def test_the_eval_limit_bounds_each_step_not_the_whole_play(run_dir, tmp_path):
    """With a 1-s limit, 40 episodes of the trained CartPole and a GIF (seconds in all, most of them the GIF's
    encoding after its episode: ~4 s for its 100 frames) play through. 100-step episodes: the GIF of a 500-step
    one took 20 s alone to encode, and a longer encoding proves no more."""
    import json
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    cfg = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**cfg, "wait_timeout_s": 1.0}))
    out = eval_cli(str(copy), "--episodes", "40", "--video", str(tmp_path / "ep.gif"), "--env-kwargs",
                   "max_episode_steps=100")
    assert out.returncode == 0 and out.stdout.startswith('CartPole-v1 (env kwargs {"max_episode_steps":100}), '
                                                         'final weights'), out.stdout + out.stderr


def test_tensorboard_event_files_hold_the_listed_tags(run_dir):
    import glob

    import tensorflow as tf

    from actorlearner.tensorboard import TAGS

    found, steps = set(), []
    for path in glob.glob(f"{run_dir}/tb/events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                found.add(value.tag)
                steps.append(event.step)
    # The default (impala) loss has no ratio to clip or measure, and makes one update a batch.
    expected = set(TAGS) - {"loss/clip_frac", "loss/approx_kl", "loss/update_kl", "train/updates"}
    assert found == expected, expected ^ found
    assert max(steps) > 0  # stepped by env steps


def test_a_run_on_an_env_factory_is_not_played_on_its_config_env_id(tmp_path):
    """A run trained on env_fn keeps its config's env id (CartPole-v1, the default, unless named): eval, export,
    load_policy and --resume made that id's env and used the policy on it, or trained on it, unasked."""
    from actorlearner import load_policy, resume_config
    from actorlearner.preflight import resume_point

    run = str(tmp_path / "run")
    make = lambda: gym.wrappers.TimeLimit(gym.make("CartPole-v1").unwrapped, 50)  # noqa: E731 - a factory
    train(Config(serial=True, max_steps=1280, eval_every_s=0, run_dir=run), env_fn=make)
    says = rf"^{run} trained on an env factory \(env_fn\), not on the env id 'CartPole-v1' its config names: "
    with pytest.raises(ConfigError, match=says + "loading its policy needs that factory again"):
        load_policy(run)
    assert load_policy(run, env_fn=make).greedy(np.zeros((1, 4), np.float32)).shape == (1,)
    with pytest.raises(ConfigError, match=says + "resuming it needs that factory again"):
        resume_point(resume_config(run, {"max_steps": 2560}))
    resume_point(resume_config(run, {"max_steps": 2560}), custom_env=True)  # with the factory: fine
    out = eval_cli(run, "--episodes", "1")
    assert out.returncode == 2 and out.stderr.strip().splitlines() == [
        f"actorlearner: error: {run} trained on an env factory (env_fn), not on the env id 'CartPole-v1' its config "
        f"names: loading its policy needs that factory again (env_fn=...), which the command line cannot make (it "
        f"can where the factory is a function at the top of a module, which the run names)"]


def test_render_shows_the_episodes_and_env_kwargs_play_a_variant_of_the_env(tmp_path):
    """eval --render makes the run's env in gymnasium's human mode (MatchSign "shows" each step on stdout, where a
    real env opens a window), and without a display it is one line before anything is played: SDL drew CartPole's
    frames nowhere and the episodes played on at the env's frame rate. eval --env-kwargs plays the run's env with
    other arguments, refused where they change its spaces."""
    import os

    run = str(tmp_path / "run")
    train(Config(env="custom_envs:MatchSign-v0", serial=True, max_steps=1_280, eval_every_s=0, run_dir=run))
    environ = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    environ["PYTHONPATH"] = str(ROOT / "tests")
    # --env-kwargs: a variant of the run's env (lag=True: the previous step's sign is rewarded), said in the line.
    out = subprocess.run([sys.executable, "-m", "actorlearner", "eval", run, "--render", "--episodes", "2",
                          "--env-kwargs", "lag=true"], capture_output=True, text=True, cwd=ROOT, timeout=120,
                         env={**environ, "DISPLAY": ":0"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("MatchSign shows step") == 20 and "over 2 episodes, length 10" in out.stdout, out.stdout
    assert 'custom_envs:MatchSign-v0 (env kwargs {"lag":true}), final weights' in out.stdout
    from actorlearner.loading import env_variant, run_config

    cfg = run_config(run)[0]
    with pytest.raises(ConfigError, match=r"^--env-kwargs multi=discrete: the env has other observations or actions "
                                          r"than the run's \(actions 2 actions in the run, .* here\): its policy plays "
                                          r"only an env with the same spaces$"):
        env_variant(run, cfg, "multi=discrete")
    out = subprocess.run([sys.executable, "-m", "actorlearner", "eval", run, "--render"], capture_output=True,
                         text=True, cwd=ROOT, timeout=120, env=environ)
    if sys.platform.startswith("linux"):
        assert out.returncode == 2 and out.stderr.count("\n") == 1 and "there is no display here" in out.stderr
        assert "MatchSign shows" not in out.stdout
