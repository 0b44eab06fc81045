"""Return against wall clock on Atari and MuJoCo: actorlearner (`train --env ID`, so the env's preset) against
stable-baselines3 PPO with rl-baselines3-zoo's hyperparameters (`sb3_atari.py` for ALE games, `sb3_ppo.py` with
the zoo's tuned MuJoCo entries), or against Sample Factory with its own Atari example's settings (`--peer sf`,
`sf_atari.py`, ALE games), run back to back on the same machine for the same minutes; the mean return of the last
(up to) 100 finished training episodes sampled at every minute.

    python benchmarks/curves.py --games pong,breakout --minutes 20 --peer-python /path/to/sb3venv/bin/python
    python benchmarks/curves.py --games hopper,halfcheetah --minutes 10   # pip install -e ".[bench,mujoco]"
    python benchmarks/curves.py --games pong --minutes 20 --peer sf --peer-python /path/to/sfvenv/bin/python

--sides ours|peer runs one side only; --merge FILE.json takes the other side's curves from an earlier
curves.json (or atari_curves.json) (say so when you quote such a table: the sides then ran at different hours).
--ours-run GAME=RUN_DIR reads our side from a finished run's metrics.jsonl (cut at --minutes) instead of
training, e.g. the first 20 minutes of a longer run. Writes curves.json, .md (the table) and .png.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

from common import write_outputs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GAMES = {"pong": "ALE/Pong-v5", "breakout": "ALE/Breakout-v5", "halfcheetah": "HalfCheetah-v5",
         "hopper": "Hopper-v5", "walker2d": "Walker2d-v5"}
MARKS = (5, 10, 15, 20)
PEERS = {"sb3": "SB3 PPO (zoo)", "sf": "Sample Factory (its Atari example)"}


def ours_curve(run_dir: str, minutes: float) -> list:
    """[(time_s, env_steps, mean_return, episodes)] from a run's metrics.jsonl, up to `minutes`."""
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [(m["time_s"], m["env_steps"], m["mean_return_100"], m["episodes"]) for m in map(json.loads, f)
                if m["time_s"] <= minutes * 60 + 1]


def run_ours(game: str, seed: int, minutes: float, flags: list) -> list:
    with tempfile.TemporaryDirectory() as d:
        run_dir = os.path.join(d, "run")
        proc = subprocess.run([sys.executable, "-m", "actorlearner", "train", "--env", GAMES[game], "--seed", str(seed),
                               "--max-seconds", str(minutes * 60), "--no-stop-at-target", "--run-dir", run_dir, *flags],
                              capture_output=True, text=True, cwd=ROOT, timeout=minutes * 60 + 300)
        if proc.returncode != 0:
            raise RuntimeError(f"ours on {game} failed: {proc.stderr[-2000:]}")
        return ours_curve(run_dir, minutes)


def run_peer(peer: str, game: str, seed: int, minutes: float, python: str) -> list:
    """The peer's curve. SB3: the zoo's Atari settings for an ALE game; else its tuned entry in sb3_ppo.py, never
    stopped by a target. Sample Factory: its Atari example's settings (ALE games only)."""
    if peer == "sf" and not GAMES[game].startswith("ALE/"):
        raise SystemExit(f"--peer sf runs ALE games only, not {game}")
    script, more = ("sf_atari.py", []) if peer == "sf" else ("sb3_atari.py", []) if GAMES[game].startswith("ALE/") \
        else ("sb3_ppo.py", ["--target", "inf", "--confirm-episodes", "0"])
    proc = subprocess.run([python, os.path.join(ROOT, "benchmarks", script), "--env", GAMES[game],
                           "--seed", str(seed), "--max-seconds", str(minutes * 60), *more],
                          capture_output=True, text=True, cwd=ROOT, timeout=minutes * 60 + 300)
    if proc.returncode != 0:
        raise RuntimeError(f"{PEERS[peer]} on {game} failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])["curve"]


def at_minute(curve: list, minute: float) -> tuple:
    """(mean return, env steps, episodes) of the last point at or before `minute` (None for the return when
    no episode had finished)."""
    before = [c for c in curve if c[0] <= minute * 60]
    if not before:
        return None, 0, 0
    t, steps, ret, episodes = before[-1]
    return ret, steps, episodes


def table(results: dict, minutes: float, peer: str) -> str:
    marks = [m for m in MARKS if m <= minutes] or [minutes]
    lines = [f"| game | minute | ours: return (steps, episodes) | {PEERS[peer]}: return (steps, episodes) | ahead |",
             "|---|---|---|---|---|"]

    def cell(v):
        ret, steps, episodes = v
        return f"{'-' if ret is None else f'{ret:.1f}'} ({steps / 1e6:.2f} M, {episodes})"

    for game, sides in results.items():
        for m in marks:
            o, s = at_minute(sides["ours"], m), at_minute(sides[peer], m)
            ahead = "-" if o[0] is None or s[0] is None else ("ours" if o[0] > s[0] else
                                                                 peer if s[0] > o[0] else "tie")
            lines.append(f"| {game} | {m} | {cell(o)} | {cell(s)} | {ahead} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--games", default="pong,breakout")
    p.add_argument("--minutes", type=float, default=20.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--peer", choices=sorted(PEERS), default="sb3")
    p.add_argument("--sides", default="ours,peer", help="ours, peer or both")
    p.add_argument("--peer-python", "--sb3-python", default=sys.executable,
                   help="a Python with the peer and torch (SB3: ale-py and opencv for Atari or mujoco for MuJoCo; "
                   "Sample Factory: ale-py), not actorlearner's deps")
    p.add_argument("--merge", help="an earlier curves.json to take the sides not run now from")
    p.add_argument("--ours-run", action="append", default=[], metavar="GAME=RUN_DIR")
    p.add_argument("--ours-flags", default="", help="more `actorlearner train` flags for our side, e.g. "
                   "'--epochs 4' (the env's preset applies first)")
    p.add_argument("--out", default="bench_out")
    a = p.parse_args()
    games = a.games.split(",")
    unknown = [g for g in games if g not in GAMES]
    if unknown:
        p.error(f"unknown game(s) {unknown}; known: {sorted(GAMES)}")
    sides = a.sides.split(",")
    given = dict(item.split("=", 1) for item in a.ours_run)
    results = {}
    if a.merge:
        with open(a.merge) as f:
            results = json.load(f)["results"]
    for game in games:
        results.setdefault(game, {})
        if "ours" in sides:
            results[game]["ours"] = (ours_curve(given[game], a.minutes) if game in given
                                     else run_ours(game, a.seed, a.minutes, a.ours_flags.split()))
            print(f"{game} ours: {at_minute(results[game]['ours'], a.minutes)}", flush=True)
        if "peer" in sides or a.peer in sides:  # "sb3" as the side's name before --peer
            results[game][a.peer] = run_peer(a.peer, game, a.seed, a.minutes, a.peer_python)
            print(f"{game} {PEERS[a.peer]}: {at_minute(results[game][a.peer], a.minutes)}", flush=True)
    complete = {g: s for g, s in results.items() if "ours" in s and a.peer in s}
    md = table(complete, a.minutes, a.peer)
    print(md)
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "curves.md"), "w") as f:
        f.write(md + "\n")

    def plot(plt):
        fig, axes = plt.subplots(1, len(complete), figsize=(5.5 * len(complete), 3.8), squeeze=False)
        for ax, (game, curves) in zip(axes[0], complete.items()):
            for side, label in (("ours", "actorlearner"), (a.peer, PEERS[a.peer])):
                pts = [(t / 60, r) for t, _, r, _ in curves[side] if r is not None and t <= a.minutes * 60 + 1]
                if pts:
                    ax.plot(*zip(*pts), label=label)
            ax.set_title(GAMES[game])
            ax.set_xlabel("minutes (2 cores)")
            ax.set_ylabel("mean return, last 100 episodes")
            ax.legend()
        return fig

    write_outputs("curves", a.out, {"minutes": a.minutes, "seed": a.seed, "results": results},
                  plot if complete else None)


if __name__ == "__main__":
    main()
