"""Time to a solved task on the classic suite, with each task's preset, optionally side by side with a peer run in
the same benchmark, interleaved seed by seed (ours seed 1, theirs seed 1, ours seed 2, ...): stable-baselines3 PPO
with the rl-baselines3-zoo hyperparameters (`--compare sb3`), Sample Factory 2's APPO with its own CartPole
example's settings (`--compare sf`), or RLlib's PPO or APPO with its tuned CartPole examples' (`--compare rllib`,
`rllib-appo`); these CartPole only, each in a virtual environment of its own (benchmarks/sf_appo.py and
rllib_cartpole.py say how).

Criterion everywhere: the mean return of the last 100 finished training episodes reaches the target;
time counted from the start of each command (both include their interpreter and library start-up).

    python benchmarks/learning.py                                  # the suite, 5 seeds, ours only
    python benchmarks/learning.py --compare sb3                    # and SB3 PPO (pip install -e .[bench])
    python benchmarks/learning.py --tasks cartpole --compare sf --peer-python sfvenv/bin/python
    python benchmarks/learning.py --tasks cartpole,acrobot --seeds 1,2,3
    python benchmarks/learning.py --seeds 1-10 --final-eval 100   # and each saved policy over 100 episodes

Writes learning.md (the table), learning.json and learning.png (one learning-curve panel per task).
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile

from common import ROOT, parse_seeds, write_outputs

from actorlearner.reporting import fmt_return  # 0.945 as 0.945, not 0.9 (no TensorFlow imported)

# task: (env id, target, our budget s, SB3 budget s). SB3's budgets cover its zoo n_timesteps here.
TASKS = {
    "cartpole": ("CartPole-v1", 475.0, 60, 180),
    "acrobot": ("Acrobot-v1", -100.0, 60, 180),
    "pendulum": ("Pendulum-v1", -200.0, 60, 180),
    "lunarlander": ("LunarLander-v3", 200.0, 300, 600),
    "mountaincar": ("MountainCar-v0", -110.0, 60, 900),
    # Box actions no preset names: the continuous preset, by the action space.
    "mountaincarcontinuous": ("MountainCarContinuous-v0", 90.0, 60, 180),
    "lunarlandercontinuous": ("LunarLanderContinuous-v3", 200.0, 300, 900),
    # Memory: against sb3-contrib's RecurrentPPO (pip install sb3-contrib beside stable-baselines3).
    "cartpole-novel": ("actorlearner/CartPoleNoVel-v1", 475.0, 60, 400),
    # Discrete observations; gymnasium's threshold 8 is above the optimum (7.93), so the preset's 7.0. SB3's zoo has
    # no Taxi entry: --compare leaves it out (budget 0).
    "taxi": ("Taxi-v4", 7.0, 60, 0),
    # The same with the env's action masks: ours --action-masks, SB3's side sb3-contrib's MaskablePPO (its defaults).
    "taxi-masked": ("Taxi-v4", 7.0, 60, 600),
    # MiniGrid (the minigrid extra): a key, a door, a goal; sparse reward 1 - 0.9 * steps / 250. MiniGrid registers
    # no threshold: 0.9 is ~10 steps above the optimum's ~9 (0.965).
    "minigrid-doorkey": ("MiniGrid-DoorKey-5x5-v0", 0.9, 60, 300),
    # The stretch task, left out of the default suite: SB3's zoo budget is 5 M steps (hours here).
    "bipedalwalker": ("BipedalWalker-v3", 250.0, 900, 1800),
}
DEFAULT_TASKS = ("cartpole", "acrobot", "pendulum", "lunarlander")
# Flags a task adds to both sides' command lines.
TASK_FLAGS = {"taxi-masked": ["--action-masks"]}
# The peer's algorithm where a task runs another than the one --compare names (sb3_ppo.py picks it).
PEER_ALGOS = {("sb3", "cartpole-novel"): "sb3-contrib RecurrentPPO", ("sb3", "taxi-masked"): "sb3-contrib MaskablePPO"}


def final_eval(run_dir: str, episodes: int) -> float:
    """Mean return of a finished run's saved policy (policy.npz) over `episodes` fresh episodes with sampled
    actions, as a user would check it: `actorlearner eval RUN_DIR --episodes N`."""
    proc = subprocess.run([sys.executable, "-m", "actorlearner", "eval", run_dir, "--episodes", str(episodes)],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)
    found = re.search(r": return (-?[\d.]+)", proc.stdout)
    if proc.returncode != 0 or not found:
        raise RuntimeError(f"eval of {run_dir} failed: {proc.stdout[-1000:]} {proc.stderr[-2000:]}")
    return float(found.group(1))


def run_ours(task: str, seed: int, budget: float, eval_episodes: int = 0) -> dict:
    """`actorlearner train --env ID`: the preset it picks for the id, as a user gets it, and the task's target
    (the preset's or the env's where they have one; MiniGrid registers none)."""
    with tempfile.TemporaryDirectory() as d:
        run_dir = os.path.join(d, "run")
        proc = subprocess.run([sys.executable, "-m", "actorlearner", "train", "--env", TASKS[task][0],
                               "--target-return", str(TASKS[task][1]),
                               "--seed", str(seed), "--max-seconds", str(budget), "--eval-every-s", "0",
                               "--run-dir", run_dir, *TASK_FLAGS.get(task, [])],
                              capture_output=True, text=True, cwd=ROOT, timeout=budget + 120)
        if proc.returncode != 0:
            raise RuntimeError(f"{task} seed {seed} failed: {proc.stderr[-2000:]}")
        with open(os.path.join(run_dir, "summary.json")) as f:
            s = json.load(f)
        with open(os.path.join(run_dir, "metrics.jsonl")) as f:
            curve = [(m["time_s"], m["env_steps"], m["mean_return_100"]) for m in map(json.loads, f)
                     if m["mean_return_100"] is not None]
        with open(os.path.join(run_dir, "config.json")) as f:
            config = json.load(f)
            confirm_episodes, margin = config["confirm_episodes"], config.get("confirm_margin_se", 0.0)
        evaluated = final_eval(run_dir, eval_episodes) if eval_episodes and s["solved"] else None
    return {"final_eval": evaluated, "solved_at_s": s["solved_at_s"], "solved_at_steps": s["solved_at_steps"],
            "mean_return_100": s["mean_return_100"], "env_steps": s["env_steps"], "curve": curve,
            "confirm_episodes": confirm_episodes, "confirm_margin_se": margin,
            "confirmations_failed": s.get("confirmations_failed")}


# --compare: (name in the table, its script, {task: budget s}); a task it has no settings for is left out.
PEERS = {
    "sb3": ("SB3 PPO", "sb3_ppo.py", {task: t[3] for task, t in TASKS.items() if t[3]}),
    # Sample Factory tunes no classic-control task but CartPole (sf_examples/train_gym_env.py).
    "sf": ("Sample Factory APPO", "sf_appo.py", {"cartpole": 180}),
    "rllib": ("RLlib PPO", "rllib_cartpole.py --algo ppo", {"cartpole": 300}),  # its tuned CartPole examples
    "rllib-appo": ("RLlib APPO", "rllib_cartpole.py --algo appo", {"cartpole": 300}),
}


def run_peer(peer: str, env_id: str, target: float, seed: int, budget: float, confirm_episodes: int, margin: float,
             python: str, flags: tuple = ()) -> dict:
    """One seed of a peer's run (its script prints one JSON line last), under our criterion."""
    name, script, _ = PEERS[peer]
    script, *script_args = script.split()
    proc = subprocess.run([python, os.path.join(ROOT, "benchmarks", script), *script_args, "--env", env_id,
                           "--seed", str(seed), "--target", str(target), "--max-seconds", str(budget),
                           "--confirm-episodes", str(confirm_episodes), "--confirm-margin-se", str(margin), *flags],
                          capture_output=True, text=True, cwd=ROOT, timeout=budget + 300)
    if proc.returncode != 0:
        raise RuntimeError(f"{name} {env_id} seed {seed} failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def describe(runs: list[dict]) -> dict:
    times = [r["solved_at_s"] for r in runs if r["solved_at_s"] is not None]
    steps = [r["solved_at_steps"] for r in runs if r["solved_at_steps"] is not None]
    return {"solved": len(times), "seeds": len(runs),
            "median_s": statistics.median(times) if times else None,
            "min_s": min(times) if times else None, "max_s": max(times) if times else None,
            "median_steps": statistics.median(steps) if steps else None,
            "final_return": statistics.median(r["mean_return_100"] for r in runs
                                              if r["mean_return_100"] is not None)}


def fmt_time(d: dict) -> str:
    if not d["solved"]:
        return "not reached"
    return f"{d['median_s']:.1f} s ({d['min_s']:.1f}–{d['max_s']:.1f})"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", default=",".join(DEFAULT_TASKS),
                   help=f"comma separated, of {', '.join(TASKS)} (default: all but bipedalwalker)")
    p.add_argument("--seeds", default="1,2,3,4,5")
    p.add_argument("--compare", choices=sorted(PEERS), help="also run a peer, interleaved, under the same confirmed "
                   "criterion (the same --confirm-episodes as the task's run): sb3 (stable-baselines3 PPO), sf "
                   "(Sample Factory APPO), rllib or rllib-appo (RLlib PPO, APPO); all but sb3 CartPole only")
    p.add_argument("--peer-python", "--sb3-python", default=sys.executable,
                   help="the Python that runs the peer (a virtual environment with it and torch, if they are kept "
                        "out of this one)")
    p.add_argument("--final-eval", type=int, default=0, metavar="EPISODES",
                   help="also evaluate each of our solved runs' saved policy over EPISODES sampled episodes "
                        "afterwards (`actorlearner eval`) and count those at the target")
    p.add_argument("--out", default="bench_out")
    a = p.parse_args()
    tasks = [t.strip() for t in a.tasks.split(",")]
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        p.error(f"unknown task(s) {unknown}; known: {', '.join(TASKS)}")
    seeds = parse_seeds(a.seeds)
    peer, _, peer_budgets = PEERS[a.compare] if a.compare else ("", "", {})
    results = {}
    for task in tasks:
        env_id, target, budget, _ = TASKS[task]
        ours, theirs = [], []
        for seed in seeds:
            ours.append(run_ours(task, seed, budget, a.final_eval))
            r = ours[-1]
            print(f"{task} seed {seed} ours: solved at {r['solved_at_s']} s, {r['solved_at_steps']} steps, "
                  f"final {fmt_return(r['mean_return_100'])}"
                  + (f", saved policy {fmt_return(r['final_eval'])} over {a.final_eval} episodes"
                     if r["final_eval"] is not None else ""), flush=True)
            if task in peer_budgets:
                theirs.append(run_peer(a.compare, env_id, target, seed, peer_budgets[task], r["confirm_episodes"],
                                       r["confirm_margin_se"], a.peer_python, TASK_FLAGS.get(task, ())))
                r = theirs[-1]
                algo = PEER_ALGOS.get((a.compare, task), peer)
                print(f"{task} seed {seed} {algo}: solved at {r['solved_at_s']} s, {r['solved_at_steps']} "
                      f"steps (window at {r['window_reached_at_s']} s, {r['confirmations_failed']} confirmations "
                      f"failed), final {r['mean_return_100']}", flush=True)
        results[task] = {"env": env_id, "target": target, "ours": ours, "theirs": theirs,
                         "ours_stats": describe(ours), "theirs_stats": describe(theirs) if theirs else None}

    head = "| task | target | seeds solved | time to target, median (range) | env steps to target | final return |"
    rule = "|---|---|---|---|---|---|"
    if a.compare:
        head += f" {peer} solved | {peer} time | ours / theirs |"
        rule += "---|---|---|"
    lines = [head, rule]
    for task, r in results.items():
        o = r["ours_stats"]
        steps = f"{o['median_steps'] / 1e3:,.0f} K" if o["median_steps"] else "-"
        env = " ".join([r["env"], *TASK_FLAGS.get(task, [])])
        line = (f"| {env} | {r['target']:g} | {o['solved']}/{o['seeds']} | {fmt_time(o)} | {steps} | "
                f"{fmt_return(o['final_return'])} |")
        if a.compare and r["theirs_stats"] is None:
            line += f" - | - | no {peer} settings for it |"
        elif a.compare:
            t = r["theirs_stats"]
            ratio = (f"{o['median_s'] / t['median_s']:.2f}" if o["median_s"] and t["median_s"] else
                     f"{peer} not reached" if o["median_s"] else "-")
            their_steps = f", {t['median_steps'] / 1e3:,.0f} K steps" if t["median_steps"] else ""
            algo = f" ({PEER_ALGOS[a.compare, task]})" if (a.compare, task) in PEER_ALGOS else ""
            line += f" {t['solved']}/{t['seeds']}{algo} | {fmt_time(t)}{their_steps} | {ratio} |"
        lines.append(line)
    table = "\n".join(lines)
    if a.final_eval:
        table += f"\n\nSaved policies of our solved runs, {a.final_eval} sampled episodes each (`actorlearner eval`):\n"
        for r in results.values():
            evals = [o["final_eval"] for o in r["ours"] if o["final_eval"] is not None]
            at = sum(e >= r["target"] for e in evals)
            table += (f"- {r['env']}: {at}/{len(evals)} at the target {r['target']:g}"
                      + (f", worst {fmt_return(min(evals))}, median {fmt_return(statistics.median(evals))}" if evals
                         else "") + "\n")
    print("\n" + table)
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "learning.md"), "w") as f:
        f.write(table + "\n")

    def plot(plt):
        fig, axes = plt.subplots(1, len(results), figsize=(4.5 * len(results), 3.5), squeeze=False)
        for ax, r in zip(axes[0], results.values()):
            for who, runs, color in (("actorlearner", r["ours"], "C0"), (peer, r["theirs"], "C1")):
                for i, run in enumerate(runs):
                    if run["curve"]:
                        t, ret = [c[0] for c in run["curve"]], [c[2] for c in run["curve"]]
                        ax.plot(t, ret, color=color, lw=0.8, label=who if i == 0 else None)
            ax.axhline(r["target"], color="k", ls="--", lw=0.8)
            ax.set_title(r["env"])
            ax.set_xlabel("seconds from command start")
            ax.set_ylabel("mean return, last 100 episodes")
            ax.legend(fontsize=8)
        fig.tight_layout()
        return fig

    write_outputs("learning", a.out, {"seeds": seeds, "peer": peer, "results": results}, plot)


if __name__ == "__main__":
    main()
