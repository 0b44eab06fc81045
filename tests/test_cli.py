"""Bad input: a one-line error and exit status 2 before any process starts; --help explains every flag."""

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys

import pytest

from actorlearner.config import Config
from conftest import ROOT, spawned_pids


def run_cli(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "actorlearner", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


@pytest.mark.parametrize("args, message", [
    (["--unroll-length", "0"], "--unroll-length must be >= 1"),
    (["--env", "CartPole-v9"], "unknown gymnasium env id 'CartPole-v9' (did you mean CartPole-v1"),
    # an old version: gymnasium's coloured warning for it was printed before the line (the id was made to see its
    # action space)
    (["--env", "Acrobot-v0"], "unknown gymnasium env id 'Acrobot-v0' (did you mean Acrobot-v1"),
    (["--batch-size", "50"], "must be a multiple of --envs-per-actor"),
    (["--gamma", "1.5"], "--gamma must be in [0, 1]"),
    (["--learning-rate", "-1"], "--learning-rate must be > 0"),
    (["--seed", "-1"], "--seed must be in [0, 2**31)"),
    (["--actor-nice", "20"], "--actor-nice must be in [0, 19]"),
    (["--target-return", "nan"], "--target-return must be a finite number"),
    (["--init-log-std", "nan"], "--init-log-std must be a finite number"),
    (["--learning-rate", "inf"], "--learning-rate must be a finite number"),
    (["--max-seconds", "inf"], "--max-seconds must be a finite number"),
    (["--target-kl", "-1"], "--target-kl must be >= 0"),
    (["--target-kl", "0.02"], "--target-kl ends a batch's passes early: it needs --loss appo with --epochs or "
                              "--minibatches above 1"),
    (["--env-kwargs", "is_slippery"], "--env-kwargs: 'is_slippery' is not key=value"),
    (["--env-kwargs", "gravity=1", "--env-backend", "vector"], "--env-backend vector: CartPole-v1's vector entry "
                                                               "point does not take these --env-kwargs (TypeError: "),
    (["--env", "ALE/Pong-v5", "--env-kwargs", "mode=1", "--env-backend", "ale"], "--env-kwargs go to gym.make or "
                                                                                 "an id's gymnasium vector entry"),
    (["--env", "ALE/Pong-v5", "--env-kwargs", "frameskip=2"], "--env-kwargs frameskip: set by the Atari "
                                                              "preprocessing"),
    (["--episodic-life"], "--episodic-life needs a game that reports lives (an ALE/ id), not CartPole-v1"),
    (["--frame-stack", "0"], "--frame-stack must be in [1, 64]"),
    (["--frame-stack", "2", "--env-backend", "vector"], "--frame-stack stacks single envs' observations: use "
                                                        "--env-backend auto or gymnasium, not vector"),
    (["--env", "ALE/Pong-v5", "--frame-stack", "2"], "--frame-stack: ALE games are stacked 4 frames"),
    (["--preset", "pong", "--env", "CartPole-v1"], "--preset pong is tuned for Atari games (ALE/ ids), not "
                                                   "CartPole-v1: it sets --episodic-life"),
])
def test_bad_input_is_one_line_and_exit_2(args, message, tmp_path):
    before = spawned_pids()
    proc = run_cli("train", *args, "--run-dir", str(tmp_path / "run"))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "run").exists()  # nothing was started or written
    assert spawned_pids() - before == set()


@pytest.mark.parametrize("args", [
    ["eval", "RUN", "--video", "NOWHERE/episode.mp4"],
    ["export", "RUN", "--format", "tflite", "-o", "NOWHERE/policy.tflite"],
    ["export", "RUN", "--format", "savedmodel", "-o", "NOWHERE/policy"],
    ["plot", "RUN", "-o", "NOWHERE/curves.png"],
])
def test_an_output_path_in_a_missing_directory_is_one_line_before_the_work(args, tmp_path):
    """(The run directory does not exist either: the output path is checked first.) It was a traceback after the
    episodes were played or the model exported."""
    missing = tmp_path / "missing"
    args = [a.replace("RUN", str(tmp_path / "run")).replace("NOWHERE", str(missing)) for a in args]
    proc = run_cli(*args)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert f"the directory {missing} does not exist" in lines[0], lines[0]


@pytest.mark.parametrize("args, message", [
    (["train", "--seed", "abc"], "actorlearner train: error: argument --seed: expected a whole number, got 'abc'; see "
                                 "`actorlearner train --help`"),
    (["train", "--max_seconds", "3"], "actorlearner train: error: unrecognized arguments: --max_seconds 3 (did you "
                                      "mean --max-seconds?); see `actorlearner train --help`"),
    (["train", "-q"], "actorlearner train: error: unrecognized arguments: -q; see"),
    (["eval", "RUN", "--episode", "3"], "actorlearner eval: error: unrecognized arguments: --episode 3 (did you mean "
                                        "--episodes?)"),
    (["eval"], "actorlearner eval: error: the following arguments are required: RUN_DIR"),
    (["eval", "RUN", "--episodes", "1.5"], "actorlearner eval: error: argument --episodes: expected a whole number, "
                                           "got '1.5'"),
    ([], "actorlearner: error: the following arguments are required: COMMAND; see `actorlearner --help`"),
])
def test_usage_errors_are_one_line_that_names_the_command(args, message):
    """argparse printed train's ~55-line usage above the error, and an unknown flag under the top level's usage."""
    proc = run_cli(*args)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and lines == [lines[0]] and message in lines[0], proc.stderr


def test_help_explains_every_flag():
    proc = run_cli("train", "--help")
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    for f in dataclasses.fields(Config):
        flag = "--" + f.name.replace("_", "-")
        assert flag in text, flag
        assert " ".join(f.metadata["help"].split())[:40] in text, flag
    # In groups, each flag under its heading (config_sources.HELP_SECTIONS), the usage line short.
    headings = [line[:-1] for line in proc.stdout.splitlines() if line.endswith(":") and not line.startswith(" ")]
    assert headings == ["options", "the task", "when to stop", "actors", "the model", "the learner",
                        "evaluation and the solved test", "output, checkpoints and resuming",
                        "failures, processes and machines"], headings
    learner = proc.stdout.split("\nthe learner:")[1].split("\nevaluation and")[0]
    assert "--learning-rate" in learner and "--env " not in learner
    assert len(proc.stdout.split("\n\n")[0].splitlines()) == 1  # the usage: one line, not 60


def test_launch_script_is_the_same_command():
    proc = subprocess.run([sys.executable, "scripts/train.py", "--help"], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)
    assert proc.returncode == 0 and "--envs-per-actor" in proc.stdout


def test_a_run_prints_no_tensorflow_start_up_noise_and_skips_matplotlib(tmp_path):
    """The command filters TensorFlow's C++ start-up notices (in the learner, and in actors that run TensorFlow)
    and keeps Keras from importing matplotlib and OpenCV (0.5-0.7 s of start-up), and TensorFlow from loading API
    namespaces a run does not use (~0.25 s); importing TensorFlow anywhere before tf_start would undo all three.
    Each imports as usual afterwards."""
    code = ("import sys; from actorlearner.cli import main; "
            f"rc = main(['train', '--max-steps', '1000', '--eval-every-s', '0', '--actor-inference', 'tensorflow', "
            f"'--run-dir', {str(tmp_path / 'r')!r}]); "
            "import importlib.util as u; here = [m for m in ('matplotlib', 'cv2') if u.find_spec(m)]; "
            "print('imported:', [m for m in here if m in sys.modules]); "
            "[__import__(m) for m in here]; import matplotlib.pyplot; print('after:', matplotlib.pyplot.__name__); "
            "import types, tensorflow as tf; api = ['tensorflow._api.v2.compat', 'tensorflow._api.v2.feature_column']; "
            "print('lazy:', [type(sys.modules[m]) is not types.ModuleType for m in api]); "
            "print('used:', tf.compat.v1.placeholder.__name__, tf.feature_column.numeric_column.__name__, "
            "tf.lite.TFLiteConverter.__name__, "
            "[type(sys.modules[m]) is types.ModuleType for m in api]); "
            "sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    from actorlearner.tf_start import TF_IMPORT_NOISE

    noise = [n for n in TF_IMPORT_NOISE if n in proc.stdout + proc.stderr]
    assert not noise, proc.stderr
    assert "imported: []" in proc.stdout  # matplotlib is in the test extra; OpenCV is checked where installed
    assert "after: matplotlib.pyplot" in proc.stdout
    # TensorFlow's unused API namespaces were left to load on first use (tf_start._LAZY_TF_API), and do.
    assert "lazy: [True, True]" in proc.stdout, proc.stdout
    assert "used: placeholder numeric_column TFLiteConverterV2 [True, True]" in proc.stdout, proc.stdout
    # What the run ran on, recorded at its end (off the start-up path), as `actorlearner info` prints it.
    system = json.loads((tmp_path / "r" / "summary.json").read_text())["system"]
    import tensorflow as tf

    assert system["packages"]["tensorflow"] == tf.__version__ and system["cores_usable"] >= 1, system
    assert (system["packages"]["envpool"] is None) == (importlib.util.find_spec("envpool") is None), system


def test_info_prints_what_a_run_records():
    from actorlearner.system_info import describe, system_info

    proc = run_cli("info")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    info = system_info()
    printed, expected = proc.stdout.splitlines(), describe(info)
    # All but the free /dev/shm, which another process may change between the two calls.
    assert [line.split("; /dev/shm")[0] for line in printed] == [line.split("; /dev/shm")[0] for line in expected]
    assert f"tensorflow {info['packages']['tensorflow']}" in proc.stdout and "cores" in proc.stdout


def test_cpu_model_and_bf16_hardware_are_read_from_cpuinfo(tmp_path):
    from actorlearner.system_info import cpu_model, describe

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: AMD EPYC 9R14\nflags\t\t: fpu avx512_bf16\n")
    assert cpu_model(str(cpuinfo)) == "AMD EPYC 9R14"
    lines = describe({"python": "3.11.7", "platform": "Linux", "cpu": "AMD EPYC 9R14", "cores": 16, "cores_usable": 2,
                      "bf16_hardware": "AVX512-BF16", "shm_free_mb": 64,
                      "packages": {"tensorflow": "2.21.0", "envpool": None}})
    assert lines[1] == "CPU: AMD EPYC 9R14, 2 of 16 cores usable, bfloat16 hardware: AVX512-BF16; /dev/shm 64 MB free"
    assert lines[2:] == ["packages: tensorflow 2.21.0", "not installed: envpool"]


@pytest.mark.parametrize("raised, shown", [(None, "keep\n"), (ValueError, "noise 1\nkeep\n"),
                                           (KeyboardInterrupt, "keep\n")])
def test_native_stderr_keeps_the_noise_only_when_the_block_failed(capfd, raised, shown):
    """TensorFlow's import notices are dropped, unless the import failed (they may say why); a Ctrl-C during
    the import is no failure of it."""
    from actorlearner.tf_start import native_stderr_filtered

    try:
        with native_stderr_filtered(("noise",)):
            os.write(2, b"noise 1\nkeep\n")
            if raised:
                raise raised()
    except (ValueError, KeyboardInterrupt):
        pass
    assert capfd.readouterr().err == shown
