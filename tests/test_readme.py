"""The README's Python example, run as it is written there."""

import re

from conftest import ROOT


def readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- api-example -->\s*```python\n(.*?)```", text, re.S)
    assert match, "the README lost its api-example block"
    return match.group(1)


def test_readme_python_example_runs(tmp_path, monkeypatch, no_leaks):
    monkeypatch.chdir(tmp_path)  # it writes runs/api-example
    namespace = {"__name__": "__main__"}
    exec(compile(readme_example(), "README.md:api-example", "exec"), namespace)
    summary = namespace["summary"]
    assert summary["solved"] and summary["mean_return_100"] >= 200, summary
    assert namespace["action"] in (0, 1)
    assert (tmp_path / "runs" / "api-example" / "summary.json").exists()
