"""The README's library example runs as written.

Blocks fenced as ```python are executed; ```py blocks (which need downloads,
such as ImageNet weights) are shown but not run.
"""
import re
from pathlib import Path


def test_readme_library_example_runs():
    text = Path(__file__).resolve().parent.parent.joinpath("README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "README has no python example"
    for block in blocks:
        namespace: dict = {}
        exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102 - our own documentation
    weighting = namespace["weighting"]
    assert set(weighting.log_vars) == {"digit", "domain"}
    assert all(v.item() != 0.0 for v in weighting.log_vars.values())  # the weights were trained
