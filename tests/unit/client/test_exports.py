"""The public surface of roost.client."""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys

import roost.client


def test_all_matches_what_the_package_exports() -> None:
    """__all__ lists exactly the public names bound in roost/client/__init__.py."""
    tree = ast.parse(inspect.getsource(roost.client))
    imported = {
        alias.asname or alias.name
        for node in tree.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    assert sorted(roost.client.__all__) == sorted(imported)
    for name in roost.client.__all__:
        assert hasattr(roost.client, name), name


def test_client_does_not_import_the_agent_side() -> None:
    """Importing roost.client loads none of store, catalog, api, agent or the health runner."""
    code = (
        "import sys, roost.client\n"
        "bad = [m for m in sys.modules if m.split('.')[:2] in (['roost','store'], ['roost','catalog'],"
        " ['roost','api'], ['roost','agent'], ['roost','gateway']) or m == 'roost.health.runner']\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
