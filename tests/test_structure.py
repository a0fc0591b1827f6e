"""The shape of the code: the contracts stay pure, and nothing imports in a circle.

``flowscope.core`` is what the SDK and the collector share; the collector must
load it without the OpenTelemetry SDK, httpx or the run context. Each check runs
in a fresh interpreter, because this one has long since imported everything.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def loaded_after(code: str) -> list[str]:
    """Module names a fresh interpreter has loaded after running ``code``."""
    probe = code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))\n"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


CORE_MODULES = sorted(
    "flowscope.core." + p.relative_to(ROOT / "sdk/flowscope/core").with_suffix("").as_posix().replace("/", ".")
    for p in (ROOT / "sdk/flowscope/core").rglob("*.py")
    if p.name != "__init__.py"
)


def test_the_contracts_import_no_otel_sdk_no_httpx_and_no_runtime() -> None:
    assert CORE_MODULES, "sdk/flowscope/core holds no modules"
    mods = loaded_after("\n".join(f"import {m}" for m in CORE_MODULES))
    assert not [m for m in mods if m.startswith(("opentelemetry", "httpx", "wrapt"))]
    runtime = [m for m in mods if m.startswith("flowscope.") and not m.startswith(("flowscope.core", "flowscope._version"))]
    assert runtime == [], f"flowscope.core pulled in the SDK runtime: {runtime}"


def test_the_package_face_loads_its_names_lazily() -> None:
    mods = loaded_after("import flowscope\nassert flowscope.__version__")
    assert "opentelemetry.sdk.trace" not in mods
    mods = loaded_after("import flowscope\nflowscope.init")
    assert "opentelemetry.sdk.trace" in mods  # a public name still works, on first use


@pytest.mark.parametrize("what", ["flowscope_collector", "flowscope_collector.cli"])
def test_the_collector_imports_only_the_contracts_from_the_sdk(what: str) -> None:
    mods = loaded_after(f"import {what}\nfrom {what} import *")
    assert "opentelemetry.sdk.trace" not in mods and "httpx" not in mods
    sdk = [m for m in mods if m.startswith("flowscope.") and not m.startswith(("flowscope.core", "flowscope._version"))]
    assert sdk == [], f"the collector imported SDK runtime modules: {sdk}"


def test_no_public_name_is_shadowed_by_a_submodule() -> None:
    """Importing ``flowscope.x`` sets the package attribute ``x`` to the module, so a lazily
    loaded public name must never share its name with a module of the package."""
    import flowscope

    modules = {p.stem for p in (ROOT / "sdk/flowscope").iterdir() if p.suffix == ".py" or (p / "__init__.py").exists()}
    functions = [name for name, where in flowscope._LAZY.items() if where and name in modules]
    assert functions == [], f"public names that a submodule import would replace: {functions}"
    mods = loaded_after(
        "import importlib, pkgutil, flowscope\n"
        "for m in pkgutil.walk_packages(flowscope.__path__, 'flowscope.'):\n"
        "    if '.testing' not in m.name and '_bootstrap' not in m.name and m.name != 'flowscope.__main__':\n"
        "        importlib.import_module(m.name)\n"
        "for name in flowscope.__all__:\n"
        "    v = getattr(flowscope, name)\n"
        "    assert name in ('cache', 'metrics') or not hasattr(v, '__path__') and type(v).__name__ != 'module', name\n"
    )
    assert "flowscope.scopes" in mods


# --- import cycles ----------------------------------------------------------------------

PACKAGES = {"flowscope": ROOT / "sdk/flowscope", "flowscope_collector": ROOT / "collector/flowscope_collector"}


def _module_files() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for pkg, base in PACKAGES.items():
        for path in base.rglob("*.py"):
            parts = [pkg, *path.relative_to(base).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """First-party modules ``name`` imports anywhere (functions included), except under TYPE_CHECKING:
    a function-level import that only dodges a cycle is still a cycle."""
    import ast

    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            for alias in node.names:
                sub = f"{mod}.{alias.name}"
                found.add(sub if sub in modules else mod)
    return {m for m in found if m in modules and m != name}


def test_no_import_cycles_in_the_sdk_or_the_collector() -> None:
    modules = _module_files()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    # Tarjan's strongly connected components
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert cycles == [], "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_the_all_extra_leaves_out_penguiflows_heavy_dependencies() -> None:
    """``pip install -e ".[all]"`` built 1.6 GB because penguiflow pulls mlflow, scikit-learn, scipy
    and matplotlib; it keeps its own extra, and ``dev`` keeps it so the suite still tests it."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    (all_,) = extras["all"]
    assert "penguiflow" not in all_
    assert any(d.startswith("penguiflow") for d in extras["dev"])
    assert extras["penguiflow"] == ["penguiflow>=3.0"]
    readme = (ROOT / "README.md").read_text()
    for extra in extras:
        if extra != "bench":
            assert f"`{extra}`" in readme, f"README does not say what the {extra!r} extra costs"


def test_the_documented_pricing_file_is_one_the_parser_takes() -> None:
    """docs/usage.md's pricing example is read by the real parser, and prices what it says."""
    import re
    from decimal import Decimal

    from flowscope.core.pricing.catalog import PricingCatalog

    text = (ROOT / "docs/usage.md").read_text()
    example = re.search(r"<!-- pricing-example -->\n```json\n(.*?)```", text, re.S)
    assert example, "docs/usage.md lost its pricing example"
    catalog = PricingCatalog(json.loads(example.group(1)))
    cost = catalog.price("ft:gpt-4o-mini:acme-v2", "openai", {"input_tokens": 1_000_000, "output_tokens": 1_000_000})
    assert cost.total_usd == Decimal("1.50")
