#!/usr/bin/env python
"""The import graph of python/tenantry: import circles, layer order, function-local imports.

Reads the source with ``ast`` (imports nothing of tenantry, needs no Django):

- the *module-level* graph: every ``import``/``from ... import`` that runs
  when a module is imported (at top level, in a class body, in a top-level
  ``try``/``if``), relative or absolute, that names a tenantry module. An
  import of ``tenantry.a.b`` also runs ``tenantry.a/__init__``, so it is an
  edge to that package too (except to the importer's own packages, which
  Python has already started). ``if TYPE_CHECKING:`` blocks never run and are
  left out.
- the *function-local* imports: an import inside a function or method,
  recorded separately (module, line, function, what it imports). Such an
  import runs late, so it can hide a circle; the test
  (tests/ops/test_import_graph.py) keeps the remaining ones to a commented
  allow-list. One that closes a circle (its target imports, at module
  level, a path back to the importer) is a *hidden circle*.
- the *layers* (``LAYERS`` below, docs/architecture.md#layers-of-the-python-package):
  a module imports, at module level, only modules of its own layer or of a
  lower one. A module in no layer is a problem too (place it).

    python scripts/import_graph.py            # circles, layers, function-local imports
    python scripts/import_graph.py --json     # the same as JSON
    python scripts/import_graph.py --edges    # also every module-level edge

Exit status: 1 when there is a circle (module-level or hidden) or a layer
problem, else 0.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DIR = ROOT / "python" / "tenantry"
PACKAGE = "tenantry"

#: The layers of the package, lowest first: (name, modules). A name covers
#: the module and every module under it (``tenantry.db`` covers
#: ``tenantry.db.rls``), except ``tenantry``: its __init__ only. Kept in step
#: with docs/architecture.md.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    # The Rust core and the names ``import tenantry`` gives eagerly (the
    # package's __init__ loads everything else by name on first use).
    ("core", ("tenantry", "tenantry._core", "tenantry.exceptions", "tenantry.resolvers")),
    # The parsed DJUST_CONFIG, the audit log, addressing and usage counters.
    # Where metrics and traces hook into the request, event, job and refusal
    # paths (observe), and the OpenTelemetry watcher (tracing).
    (
        "config",
        (
            "tenantry.conf",
            # The bound tenant's variable (djust's, shared: the seam's one low
            # module and the seam package's lazy __init__) and the rule of
            # calls that name a tenant, which this layer's modules apply.
            "tenantry.djust",
            "tenantry.naming",
            "tenantry.audit",
            "tenantry.addressing",
            "tenantry.usage",
            "tenantry.observe",
            "tenantry.tracing",
            "tenantry.signals",
        ),
    ),
    # The bound tenant (a ContextVar) and what reads only it.
    (
        "context",
        ("tenantry.context", "tenantry.logging", "tenantry.flags", "tenantry.djust.slots"),
    ),
    # Per-tenant services that need the bound tenant but no model graph:
    # admission, the registry and its abstract models, cache, files, the
    # per-tenant backend cache of presence/state/rate limits.
    (
        "services",
        (
            "tenantry.access",
            "tenantry.registry",
            "tenantry.models",
            "tenantry.cache",
            "tenantry.storage",
            "tenantry._tenant_backend",
            "tenantry.groups",
            "tenantry.responses",
        ),
    ),
    # What each model holds and refers to (derived from Django's models only).
    ("graph", ("tenantry.graph", "tenantry.ownership")),
    # The second wall: the scope names and bypass (db.scope), the connection
    # wrapper (db.rls), the migration operation, the RLS-scoped querysets.
    ("database", ("tenantry.db",)),
    # The first wall's rules: writes, references, reads, joins.
    ("rules", ("tenantry.isolation", "tenantry.joins")),
    # TenantManager / TenantQuerySet.
    ("managers", ("tenantry.managers",)),
    # Operating tenants: deletion and fresh starts, the admin.
    # Suspension, impersonation.
    (
        "operations",
        (
            "tenantry.lifecycle",
            "tenantry.admin",
            "tenantry.suspension",
            "tenantry.impersonation",
            "tenantry.audit_trail",
            "tenantry.transfer",
            "tenantry.moving",
            "tenantry.sharing",
        ),
    ),
    # Hooking the first wall into Django (compilers, base managers, forms).
    ("wall", ("tenantry.wall",)),
    # The request path and the live plane: middleware, views, djust, jobs.
    (
        "integration",
        (
            "tenantry.middleware",
            "tenantry.ratelimit",
            "tenantry.mixins",
            "tenantry.context_processors",
            "tenantry.channels",
            "tenantry.live",
            "tenantry.live_presence",
            "tenantry.presence",
            "tenantry.state",
            "tenantry.djust_state",
            # The rest of the seam (a new module under tenantry.djust falls in
            # the config layer until it is listed here: its imports say so).
            "tenantry.djust.live",
            "tenantry.djust.broadcasts",
            "tenantry.djust.presence",
            "tenantry.djust.state",
            "tenantry.djust.live_presence",
            "tenantry.djust.shared_rooms",
            "tenantry.shared_rooms",
            "tenantry.djust.view_hooks",
            "tenantry.djust.auth",
            "tenantry.djust.names",
            "tenantry.djust.installation",
            "tenantry.celery",
            # The Prometheus exporter (a view) and the usage dashboard.
            "tenantry.metrics",
            "tenantry.dashboard",
        ),
    ),
    # What Django, pytest and manage.py call into.
    (
        "entry",
        (
            "tenantry.apps",
            "tenantry.checks",
            "tenantry.testing",
            "tenantry.management",
            "tenantry.migrations",
        ),
    ),
]


@dataclass(frozen=True)
class LocalImport:
    """An import statement that runs only when its function is called."""

    module: str  # the importing module, e.g. "tenantry.lifecycle"
    line: int
    function: str  # qualified name of the enclosing function
    target: str  # the imported module, e.g. "tenantry.cache" or "celery"
    internal: bool  # target is a tenantry module


def module_names(package_dir: Path = PACKAGE_DIR) -> dict[str, Path]:
    """Every module of the package, by dotted name (``tenantry.db`` for db/__init__.py)."""
    names: dict[str, Path] = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    # The compiled core is a module too (a leaf: it imports nothing of the package).
    names.setdefault(f"{PACKAGE}._core", package_dir / "_core.pyi")
    return names


def _is_package(name: str, modules: dict[str, Path]) -> bool:
    return modules[name].name == "__init__.py"


def _base(module: str, node: ast.ImportFrom, modules: dict[str, Path]) -> str:
    """The absolute module a ``from X import ...`` reads X as."""
    if node.level == 0:
        return node.module or ""
    package = module if _is_package(module, modules) else module.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def _targets(module: str, node: ast.Import | ast.ImportFrom, modules: dict[str, Path]) -> list[str]:
    """The modules an import statement names (submodules named in ``from pkg import sub`` too)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = _base(module, node, modules)
    found = []
    for alias in node.names:
        sub = f"{base}.{alias.name}"
        found.append(sub if sub in modules else base)
    return list(dict.fromkeys(found))


def _runs_at_import(module: str, target: str, modules: dict[str, Path]) -> list[str]:
    """``target`` and the packages above it that importing it runs, minus ``module``'s own."""
    own = set()
    name = module
    while name:
        own.add(name)
        name = name.rpartition(".")[0]
    ran = []
    name = target
    while name.startswith(PACKAGE):
        if name in modules and name not in own:
            ran.append(name)
        name = name.rpartition(".")[0]
    # A module naming its own package explicitly (``from tenantry import X`` for an
    # attribute of __init__) does depend on it.
    if target in own and target != module:
        ran.append(target)
    return ran


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


class _Walker(ast.NodeVisitor):
    def __init__(self, module: str, modules: dict[str, Path]):
        self.module = module
        self.modules = modules
        self.scope: list[str] = []  # enclosing classes and functions
        self.in_function = 0
        self.edges: dict[str, list[int]] = {}
        self.local: list[LocalImport] = []

    def _record(self, node: ast.Import | ast.ImportFrom) -> None:
        for target in _targets(self.module, node, self.modules):
            internal = target == PACKAGE or target.startswith(PACKAGE + ".")
            if self.in_function:
                self.local.append(
                    LocalImport(
                        module=self.module,
                        line=node.lineno,
                        function=".".join(self.scope),
                        target=target,
                        internal=internal,
                    )
                )
            elif internal:
                for ran in _runs_at_import(self.module, target, self.modules):
                    self.edges.setdefault(ran, []).append(node.lineno)

    visit_Import = _record
    visit_ImportFrom = _record

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> None:
        self.scope.append(getattr(node, "name", "<lambda>"))
        self.in_function += 1
        self.generic_visit(node)
        self.in_function -= 1
        self.scope.pop()

    visit_FunctionDef = _function
    visit_AsyncFunctionDef = _function
    visit_Lambda = _function

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.scope.append(node.name)
        self.generic_visit(node)
        self.scope.pop()

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)


@dataclass
class Graph:
    edges: dict[str, dict[str, list[int]]]  # importer -> imported -> lines
    local: list[LocalImport]

    def cycles(self) -> list[list[str]]:
        """Each strongly connected component with more than one module (or a self-import)."""
        index: dict[str, int] = {}
        low: dict[str, int] = {}
        stack: list[str] = []
        on_stack: set[str] = set()
        found: list[list[str]] = []
        counter = 0

        def connect(node: str) -> None:
            nonlocal counter
            index[node] = low[node] = counter
            counter += 1
            stack.append(node)
            on_stack.add(node)
            for succ in sorted(self.edges.get(node, {})):
                if succ not in index:
                    connect(succ)
                    low[node] = min(low[node], low[succ])
                elif succ in on_stack:
                    low[node] = min(low[node], index[succ])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in self.edges.get(node, {}):
                    found.append(sorted(component))

        for node in sorted(self.edges):
            if node not in index:
                connect(node)
        return sorted(found)

    def cycle_path(self, component: list[str]) -> list[str]:
        """One closed path through a component, for a readable message."""
        members = set(component)
        start = component[0]
        # Breadth-first from start back to start, inside the component.
        paths = {start: [start]}
        queue = [start]
        while queue:
            node = queue.pop(0)
            for succ in sorted(self.edges.get(node, {})):
                if succ not in members:
                    continue
                if succ == start:
                    return [*paths[node], start]
                if succ not in paths:
                    paths[succ] = [*paths[node], succ]
                    queue.append(succ)
        return component


def layer_of(module: str) -> int | None:
    """The index in ``LAYERS`` of ``module`` (its longest listed prefix), or None."""
    best: tuple[int, int] | None = None  # (prefix length, layer)
    for index, (_, members) in enumerate(LAYERS):
        for member in members:
            # The package itself stands for its __init__ only.
            if module == member or (member != PACKAGE and module.startswith(member + ".")):
                if best is None or len(member) > best[0]:
                    best = (len(member), index)
    return None if best is None else best[1]


def layer_problems(graph: Graph) -> list[str]:
    """Modules in no layer, and module-level imports of a higher layer."""
    problems = []
    for module in sorted(graph.edges):
        if layer_of(module) is None:
            problems.append(f"{module} is in no layer (add it to LAYERS in {Path(__file__).name})")
    for importer in sorted(graph.edges):
        mine = layer_of(importer)
        for imported, lines in sorted(graph.edges[importer].items()):
            theirs = layer_of(imported)
            if mine is not None and theirs is not None and theirs > mine:
                problems.append(
                    f"{importer} (layer {LAYERS[mine][0]!r}) imports {imported} "
                    f"(layer {LAYERS[theirs][0]!r}, higher) at line {lines[0]}"
                )
    return problems


def hidden_circles(graph: Graph) -> list[tuple[LocalImport, list[str]]]:
    """Function-local imports that close a circle: ``(import, path back)``,
    the path going from the import's target to its importer at module level."""
    found = []
    for local in graph.local:
        if not local.internal:
            continue
        back = _path(graph.edges, local.target, local.module)
        if back is not None:
            found.append((local, back))
    return found


def _path(edges: dict[str, dict[str, list[int]]], start: str, goal: str) -> list[str] | None:
    parents: dict[str, str | None] = {start: None}
    queue = [start]
    while queue:
        node = queue.pop(0)
        if node == goal:
            path = []
            step: str | None = node
            while step is not None:
                path.append(step)
                step = parents[step]
            return path[::-1]
        for succ in sorted(edges.get(node, {})):
            if succ not in parents:
                parents[succ] = node
                queue.append(succ)
    return None


def build(package_dir: Path = PACKAGE_DIR) -> Graph:
    modules = module_names(package_dir)
    edges: dict[str, dict[str, list[int]]] = {}
    local: list[LocalImport] = []
    for name, path in modules.items():
        if path.suffix != ".py":
            continue
        walker = _Walker(name, modules)
        walker.visit(ast.parse(path.read_text(), filename=str(path)))
        edges[name] = walker.edges
        local.extend(walker.local)
    return Graph(edges=edges, local=local)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--edges", action="store_true", help="also print every module-level edge")
    parser.add_argument(
        "--package", type=Path, default=PACKAGE_DIR, help="the tenantry package directory to read"
    )
    args = parser.parse_args(argv)

    graph = build(args.package)
    cycles = [graph.cycle_path(c) for c in graph.cycles()]
    hidden = hidden_circles(graph)
    layers = layer_problems(graph)
    status = 1 if cycles or hidden or layers else 0
    if args.json:
        print(
            json.dumps(
                {
                    "cycles": cycles,
                    "hidden_circles": [{**asdict(local), "back": back} for local, back in hidden],
                    "layer_problems": layers,
                    "function_local": [asdict(i) for i in graph.local],
                    **({"edges": graph.edges} if args.edges else {}),
                },
                indent=2,
            )
        )
        return status

    if args.edges:
        print("Module-level imports:")
        for importer in sorted(graph.edges):
            for imported in sorted(graph.edges[importer]):
                print(f"  {importer} -> {imported}")
        print()
    if cycles:
        print(f"{len(cycles)} import circle(s) at module level:")
        for path in cycles:
            print("  " + " -> ".join(path))
    else:
        print("No import circle at module level.")
    if hidden:
        print(f"{len(hidden)} circle(s) hidden by a function-local import:")
        for local, back in hidden:
            print(
                f"  {local.module}:{local.line} in {local.function}() imports {local.target}, "
                f"which imports back: {' -> '.join(back)}"
            )
    else:
        print("No circle hidden by a function-local import.")
    if layers:
        print(f"{len(layers)} layer problem(s):")
        for problem in layers:
            print("  " + problem)
    else:
        print("Every module-level import keeps to the layer order.")
    internal = [i for i in graph.local if i.internal]
    external = [i for i in graph.local if not i.internal]
    print(f"\n{len(internal)} function-local import(s) of tenantry modules:")
    for i in internal:
        print(f"  {i.module}:{i.line} in {i.function}(): {i.target}")
    print(f"\n{len(external)} function-local import(s) of other packages:")
    for i in external:
        print(f"  {i.module}:{i.line} in {i.function}(): {i.target}")
    return status


if __name__ == "__main__":
    sys.exit(main())
