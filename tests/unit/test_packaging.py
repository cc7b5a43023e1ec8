"""Every package of the tree is in the wheel: a non-editable install (the Dockerfile, the
lint's copy) gets only the packages pyproject lists, and a forgotten one fails at run time."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_pyproject_lists_every_package_of_the_tree():
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    found = set()
    for package, folder in setuptools["package-dir"].items():
        base = ROOT / folder
        for init in base.rglob("__init__.py"):
            if "static" in init.parts:
                continue
            relative = init.parent.relative_to(base).parts
            found.add(".".join((package, *relative)))
    missing = sorted(found - listed)
    assert not missing, f"pyproject's [tool.setuptools] packages lacks {missing}"
