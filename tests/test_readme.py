"""The README's Python example, run as it is written there."""

import re

from conftest import ROOT


def readme_example(marker: str = "api-example") -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(rf"<!-- {marker} -->\s*```python\n(.*?)```", text, re.S)
    assert match, f"the README lost its {marker} block"
    return match.group(1)


def test_readme_python_example_runs(tmp_path, monkeypatch, no_leaks):
    monkeypatch.chdir(tmp_path)  # it writes runs/api-example
    namespace = {"__name__": "__main__"}
    exec(compile(readme_example(), "README.md:api-example", "exec"), namespace)
    summary = namespace["summary"]
    assert summary["solved"] and summary["mean_return_100"] >= 200, summary
    assert namespace["action"] in (0, 1)
    assert (tmp_path / "runs" / "api-example" / "summary.json").exists()


def test_readme_recurrent_example_learns_the_cue_task(tmp_path, monkeypatch, no_leaks):
    """A custom recurrent model (a GRU, through state_sizes) remembers the cue: chance is 0.5."""
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__main__"}
    exec(compile(readme_example("recurrent-example"), "README.md:recurrent-example", "exec"), namespace)
    summary = namespace["summary"]
    assert summary["solved"] and summary["mean_return_100"] >= 0.95, summary
    state = namespace["state"]
    assert len(state) == 1 and state[0].shape == (1, 32) and not state[0].any()
