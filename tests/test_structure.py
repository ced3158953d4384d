"""The package's structure, read from its source with ``ast``: imports flow one way
(no cycle, no import of a higher layer), and each piece that used to be written
twice has one definition left.

The import graph has a node per module of ``spectral_restore``, ``training`` and
``tfds_builders`` (their tests left out) and an edge for every ``import`` of one of
them, at module level or inside a function alike: a deferred import only defers
the cost of a dependency, the two modules still depend on each other. An import of
``a.b.c`` also runs ``a/__init__.py`` and ``a/b/__init__.py``, so it is an edge to
each of those packages too, except the importer's own enclosing packages (which
are already being imported). Imports under ``if TYPE_CHECKING:`` do not run and
are not edges.
"""

import ast
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("spectral_restore", "training", "tfds_builders")

# Lower layers never import higher ones. A module takes the layer of its longest
# listed prefix. training/ and tfds_builders/ are applications of the library.
LAYERS = {
    "spectral_restore": 0,
    "spectral_restore.backend": 0,
    "spectral_restore.checks": 0,
    "spectral_restore.spectral": 1,
    "spectral_restore.psychoacoustics": 1,
    "spectral_restore.audio_io": 1,
    "spectral_restore.optimizers": 1,
    "spectral_restore.plotting": 1,
    "spectral_restore._pesq_job": 1,
    "spectral_restore.p862": 2,
    "spectral_restore.embeddings": 2,
    "spectral_restore.data": 2,
    "spectral_restore.metrics": 2,
    "spectral_restore.losses": 3,
    "spectral_restore.models": 4,
    "spectral_restore.callbacks": 5,
    "spectral_restore.evaluation": 5,
    "spectral_restore.export": 5,
    "spectral_restore.inference": 5,
    "training": 7,
    "tfds_builders": 7,
}
# Imports of a higher layer that are allowed (none): an entry fails the test once its
# import is gone, so the list cannot go stale.
KNOWN_UPWARD_IMPORTS = set()
# Cycles that are allowed (none); a cycle listed here that is gone fails the test.
KNOWN_CYCLES = []


def _module_name(path):
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _source_files():
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if not path.name.endswith("_test.py"):
                yield path


@pytest.fixture(scope="module")
def modules():
    """``{module name: (path, ast tree)}``."""
    return {
        _module_name(path): (path, ast.parse(path.read_text(), str(path)))
        for path in _source_files()
    }


def _is_type_checking_block(node):
    test = getattr(node, "test", None)
    return (
        isinstance(node, ast.If)
        and isinstance(test, (ast.Name, ast.Attribute))
        and (
            getattr(test, "id", None) == "TYPE_CHECKING"
            or getattr(test, "attr", None) == "TYPE_CHECKING"
        )
    )


def _import_nodes(tree):
    """Every Import/ImportFrom of ``tree`` that runs (not under ``if TYPE_CHECKING:``)."""
    pending = [tree]
    while pending:
        node = pending.pop()
        if _is_type_checking_block(node):
            pending.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        pending.extend(ast.iter_child_nodes(node))


def _ancestors(name):
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _imported_modules(importer, is_package, node, known):
    """The modules of ``known`` that one import statement loads."""
    if isinstance(node, ast.Import):
        targets = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            anchor = importer.split(".") if is_package else importer.split(".")[:-1]
            anchor = anchor[: len(anchor) - (node.level - 1)]
            base = ".".join(anchor + ([base] if base else []))
        targets = [
            f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
            for alias in node.names
        ]
    loaded = set()
    own_packages = set(_ancestors(importer)) | {importer}
    for target in targets:
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target:
            loaded.add(target)
            loaded.update(p for p in _ancestors(target) if p in known and p not in own_packages)
    loaded.discard(importer)
    return loaded


@pytest.fixture(scope="module")
def graph(modules):
    """``{module: {imported module: first line}}``."""
    edges = {}
    for name, (path, tree) in modules.items():
        edges[name] = {}
        for node in _import_nodes(tree):
            for target in _imported_modules(name, path.name == "__init__.py", node, modules):
                edges[name].setdefault(target, node.lineno)
    return edges


def _cycles(edges):
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def _layer(name):
    prefixes = [p for p in LAYERS if name == p or name.startswith(p + ".")]
    return LAYERS[max(prefixes, key=len)]


def test_the_graph_sees_every_package_and_its_imports(graph):
    # The reader itself must not be blind: these edges exist in the code.
    assert "spectral_restore.losses.perceptual" in graph["spectral_restore.losses"]
    assert "spectral_restore.spectral" in graph["spectral_restore.losses.base"]
    assert (
        "spectral_restore.data.files"
        in graph["tfds_builders.audio_folder_pairs.audio_folder_pairs_dataset_builder"]
    )
    assert "spectral_restore.models.gan" in graph["training.train"]  # an import inside a function


def test_imports_have_no_cycle(graph):
    cycles = _cycles(graph)
    described = [
        "; ".join(f"{a} -> {b} (line {graph[a][b]})" for a in cycle for b in cycle if b in graph[a])
        for cycle in cycles
        if cycle not in KNOWN_CYCLES
    ]
    assert not described, "import cycles:\n" + "\n".join(described)
    for cycle in KNOWN_CYCLES:
        assert cycle in cycles, f"{cycle} is no longer a cycle: remove it from KNOWN_CYCLES"


def test_no_module_imports_a_higher_layer(graph):
    upward = sorted(
        (name, target, line)
        for name, targets in graph.items()
        for target, line in targets.items()
        if _layer(target) > _layer(name)
    )
    unexpected = [
        f"{name} (layer {_layer(name)}) -> {target} (layer {_layer(target)}), line {line}"
        for name, target, line in upward
        if (name, target.split(".")[0] if target.split(".")[0] != "spectral_restore" else target)
        not in KNOWN_UPWARD_IMPORTS
    ]
    assert not unexpected, "imports that run back up:\n" + "\n".join(unexpected)
    for importer, target in KNOWN_UPWARD_IMPORTS:
        assert any(
            name == importer and (t == target or t.startswith(target + "."))
            for name, t, _ in upward
        ), f"{importer} no longer imports {target}: remove it from KNOWN_UPWARD_IMPORTS"


def _uses_keras_ops(function):
    return any(
        isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "ops"
        for n in ast.walk(function)
    )


def _definitions(modules, package="spectral_restore"):
    for name, (path, tree) in modules.items():
        if name == package or name.startswith(package + "."):
            for node in ast.walk(tree):
                if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                    yield name, node


def test_one_in_graph_resampler(modules):
    """Resampling inside the graph (``keras.ops``) is written once: the losses,
    embeddings and discriminators all call it."""
    found = sorted(
        f"{name}.{node.name}"
        for name, node in _definitions(modules)
        if isinstance(node, ast.FunctionDef)
        and "resampl" in node.name.lower()
        and _uses_keras_ops(node)
    )
    assert found == ["spectral_restore.audio_io.resample"]


def test_one_per_term_tracker_factory(modules):
    """The per-term ``keras.metrics.Mean`` trackers of a CombinedLoss are made in one place."""
    makers = []
    for name, (_, tree) in modules.items():
        for node in ast.walk(tree):
            if isinstance(node, (ast.DictComp, ast.ListComp)):
                over_terms = any(
                    isinstance(g.iter, ast.Attribute) and g.iter.attr == "terms"
                    for g in node.generators
                )
                builds_mean = any(
                    isinstance(n, ast.Attribute) and n.attr == "Mean" for n in ast.walk(node)
                )
                if over_terms and builds_mean:
                    makers.append(f"{name}:{node.lineno}")
    assert len(makers) == 1, makers


MOS_CONSTANTS = (1.4945, 4.6607, 1.3669, 3.8224)
BEST_MOS_VALUES = (4.644, 4.549, 4.64, 4.55)


def test_mos_constants_have_one_source(modules):
    """The P.862.1/P.862.2 mapping constants are written once (``p862.mapping``), and
    no module hard-codes the best MOS-LQO."""
    seen = {value: [] for value in MOS_CONSTANTS + BEST_MOS_VALUES}
    for name, (_, tree) in modules.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and type(node.value) is float and node.value in seen:
                seen[node.value].append(f"{name}:{node.lineno}")
    assert all(
        seen[value] == ["spectral_restore.p862.mapping:" + seen[value][0].split(":")[1]]
        for value in MOS_CONSTANTS
    ), seen
    assert not any(seen[value] for value in BEST_MOS_VALUES), seen


def _module_constants(tree):
    for node in tree.body:
        targets = (
            node.targets
            if isinstance(node, ast.Assign)
            else [node.target]
            if isinstance(node, ast.AnnAssign)
            else []
        )
        for target in targets:
            if isinstance(target, ast.Name) and re.fullmatch(r"[A-Z][A-Z0-9_]*", target.id):
                yield target.id, node


def _names_imported_from_the_library(tree):
    for node in _import_nodes(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("spectral_restore"):
            yield from node.names


def test_a_shared_constant_name_means_one_thing(modules):
    """A constant that modules import by name is not defined again elsewhere in
    the library with another value (``DISTANCES`` once was, with and without
    "cosine"). Constants only read through their module (``openl3.SAMPLE_RATE``,
    ``musicnn.SAMPLE_RATE``) may differ."""
    library = {
        name: tree for name, (_, tree) in modules.items() if name.startswith("spectral_restore")
    }
    values = {}
    for name, tree in library.items():
        for constant, node in _module_constants(tree):
            values.setdefault(constant, {})[name] = ast.dump(node.value)
    imported = {
        alias.name for tree in library.values() for alias in _names_imported_from_the_library(tree)
    }
    clashes = {
        constant: sorted(where)
        for constant, where in values.items()
        if constant in imported and len(set(where.values())) > 1
    }
    assert not clashes, clashes


def _parameters(tree):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for arg in node.args.args + node.args.kwonlyargs:
                yield arg.arg


def test_loss_arguments_are_not_named_like_what_their_module_imports(modules):
    """A loss's arguments are the keys of its config: none is named like a module
    or function of the library that its module imports or defines, so ``distance``
    or ``weighting`` in a loss means the argument alone (``distance`` was a
    function, ``weighting`` a module, imported under another name to dodge it)."""
    clashes = []
    for name, (_, tree) in modules.items():
        if not name.startswith("spectral_restore.losses"):
            continue
        taken = {
            node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))
        }
        taken.update(alias.name for alias in _names_imported_from_the_library(tree))
        taken.update(
            alias.asname for alias in _names_imported_from_the_library(tree) if alias.asname
        )
        for parameter in set(_parameters(tree)) & taken:
            clashes.append(f"{name}: {parameter}")
    assert not clashes, sorted(clashes)
