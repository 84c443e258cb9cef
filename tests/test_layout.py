"""The package's structure: subpackages that show the flow, no import cycles, imports only downstream."""
import ast
import re
import subprocess
import sys
from pathlib import Path
import pytest

pytestmark = pytest.mark.quick  # needs no converter: `make test-quick`

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "edgecnn"


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, module_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text())
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rsplit(".", 1)[0]
    nodes = tree.body if module_level_only else list(ast.walk(tree))
    if module_level_only:  # what runs at import: top-level statements, not function bodies (nor TYPE_CHECKING)
        nodes = [n for n in nodes if not (isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test))]
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                name = f"{base}.{node.module}" if node.module else base
                found |= {name} | {f"{name}.{a.name}" for a in node.names}
            elif node.module:
                found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return found


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _graph(module_level_only: bool) -> dict[str, set[str]]:
    return {m: {i for i in _imports(p, module_level_only) if i in MODULES and i != m} for m, p in MODULES.items()}


def test_no_import_cycle_among_edgecnns_modules():
    graph = _graph(module_level_only=True)
    state: dict[str, int] = {}
    cycles = []

    def visit(node, stack):
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


# Lowest first: each subpackage may import only those before it, counting imports inside functions.
# (the root package `edgecnn` and `cli` are the top: the public API and the command line)
LAYERS = ["util", "schema", "zoo", "data", "weights", "passes", "int8", "formats", "harness", "exporter", "sweeps", "apps",
          "android", "web", "cli", "__main__"]


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "edgecnn"


def test_every_subpackage_has_a_layer():
    found = {_layer(m) for m in MODULES} - {"edgecnn"}
    assert found == set(LAYERS), found ^ set(LAYERS)


def test_subpackages_import_only_the_layers_below_them():
    rank = {name: i for i, name in enumerate(LAYERS)} | {"edgecnn": len(LAYERS)}
    upward = sorted(f"{m} -> {t}" for m, targets in _graph(module_level_only=False).items()
                    for t in targets if rank[_layer(t)] > rank[_layer(m)])
    assert upward == []


def test_schema_imports_nothing_of_edgecnn_but_util():
    graph = _graph(module_level_only=False)
    outside = sorted(f"{m} -> {t}" for m, targets in graph.items() if _layer(m) == "schema"
                     for t in targets if _layer(t) not in ("schema", "util"))
    assert outside == []


def test_the_harness_reads_exports_only_through_the_gate():
    graph = _graph(module_level_only=False)
    assert [m for m, targets in graph.items() if _layer(m) == "harness"
            and any(_layer(t) == "exporter" for t in targets)] == []
    assert [m for m, targets in graph.items() if _layer(m) == "web" and any(_layer(t) == "android" for t in targets)] == []


def test_nothing_in_the_package_computes_a_path_outside_it():
    # a module finds its data beside itself: Path(__file__).with_name(...) or .parent / ...
    uses = [(m, line.strip()) for m, p in MODULES.items() for line in p.read_text().splitlines() if "__file__" in line]
    assert uses, "the pattern below no longer finds the package's data files"
    reaching_out = [(m, line) for m, line in uses
                    if not re.search(r"Path\(__file__\)(\.resolve\(\))?\.(with_name\(|parent /)", line)]
    assert reaching_out == []


def test_nothing_but_the_gate_reads_a_manifest_file():
    readers = [m for m, p in MODULES.items()
               if re.search(r"manifest\.json\"\)?\.read_text|MANIFEST_FILE\)?\.read_text", p.read_text())]
    assert readers == [], readers
    text = "\n".join(p.read_text() for p in MODULES.values())
    assert text.count("def open_export(") == 1


def test_edgecnn_list_starts_without_torch():
    code = ("import sys, io, contextlib; from edgecnn.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()) as out: main(['list'])\n"
            "print('torch' in sys.modules, 'resnet18' in out.getvalue())")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.split() == ["False", "True"], result.stderr


def test_the_readme_layout_section_names_every_subpackage():
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Layout", 1)[1].split("\n## ", 1)[0]
    subpackages = sorted(p.parent.name for p in PACKAGE.glob("*/__init__.py"))
    assert subpackages == sorted(set(LAYERS) - {"cli", "__main__"})
    for name in subpackages:
        assert f"{name}/" in section, name
