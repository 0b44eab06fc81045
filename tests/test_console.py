"""The console: a live progress line on a terminal, plain lines elsewhere, --quiet and --verbose."""

import io

from actorlearner.reporting import Console, RunStats, progress_line


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_live_line_on_a_terminal_and_messages_on_their_own_lines():
    out = Terminal()
    console = Console(stream=out)
    console.progress("step 1")
    console.progress("step 2")
    console.say("eval: 500")
    console.progress("step 3")
    console.close()
    assert out.getvalue() == "\r\033[Kstep 1\r\033[Kstep 2\r\033[Keval: 500\n\r\033[Kstep 3\n"


def test_plain_lines_when_not_a_terminal_and_quiet_drops_reports():
    out = io.StringIO()
    Console(stream=out).progress("step 1")
    assert out.getvalue() == "step 1\n"
    out = io.StringIO()
    quiet = Console(quiet=True, stream=out)
    quiet.progress("step 1")
    quiet.detail("eval: 500")
    quiet.say("done")
    assert out.getvalue() == "done\n"


def test_progress_line_shows_time_left_and_verbose_terms():
    stats = RunStats(0.0, 475.0)
    stats.env_steps = 1_000
    stats.last_losses = {"total": 0.5, "policy": 0.1, "baseline": 0.8, "entropy": 0.6, "grad_norm": 2.0,
                         "rho_mean": 1.0, "policy_spread": 0.25}
    line = progress_line(stats, 100.0, max_steps=7_000)  # 6,000 steps left at 100/s: 1 minute
    assert line.endswith("| left 1m00s") and "policy" not in line
    verbose = progress_line(stats, 100.0, verbose=True)
    assert "(policy 0.1000, baseline 0.8000, entropy 0.600, grad norm 2.000, rho 1.000, spread 0.25)" in verbose
    assert "left" not in verbose  # no limit set
    stats.last_losses.update(clip_frac=0.125, approx_kl=0.0123)  # appo's
    assert "spread 0.25, clipped 12.5%, kl 0.0123)" in progress_line(stats, 100.0, verbose=True)
    stats.last_losses["updates"] = 7  # several passes: the updates made (fewer than all with --target-kl)
    assert "spread 0.25, clipped 12.5%, kl 0.0123, 7 updates)" in progress_line(stats, 100.0, verbose=True)


def test_training_throughput_runs_from_the_first_learner_step_to_the_loops_end():
    import time

    stats = RunStats(time.monotonic(), 475.0)
    stats.first_step_s, stats.first_step_env_steps, stats.env_steps = 1.0, 1_000, 11_000
    stats.train_end_s = 6.0  # the final checkpoint and evaluation after it are not training
    assert stats.summary("CartPole-v1", 1, "max_seconds")["train_env_steps_per_s"] == 2_000
