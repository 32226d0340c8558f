"""The package layering the README's developer section describes: imports
between mmrep's packages only at module level, only downwards
(utils <- layers <- backbones <- checkpoints / deploy <- apis <- tools), no
tool importing another tool, and no test importing logic from a tool: the
tests take what they check from the package and run a tool only through
``load_tool(name).main`` (or ``.parse_args``)."""
import ast
import glob
import os
import os.path as osp

import pytest

from conftest import REPO
from tool_runner import INSTALL_HELPERS

# Lower numbers are lower layers; a module may import its own layer or
# lower ones (deploy is below checkpoints: the loader fuses through the
# walker, never the other way round).
LAYERS = {
    'mmrep.version': 0, 'mmrep.dependencies': 0, 'mmrep.utils': 0,
    'mmrep.registry': 0,
    'mmrep.models.layers': 1,
    'mmrep.models.backbones': 2, 'mmrep.models': 2, 'mmrep.datasets': 2,
    'mmrep.deploy': 3,
    'mmrep.checkpoints': 4,
    'mmrep.apis': 5,
    'mmrep': 6,
}


def layer_of(module):
    """The layer of a dotted module name: its longest listed prefix."""
    parts = module.split('.')
    for n in range(len(parts), 0, -1):
        name = '.'.join(parts[:n])
        if name in LAYERS:
            return name
    raise KeyError(module)


def module_name(path):
    rel = osp.relpath(path, REPO)[:-len('.py')].replace(osp.sep, '.')
    return rel[:-len('.__init__')] if rel.endswith('.__init__') else rel


def mmrep_imports(path, name=None):
    """``(imported module, line, inside a function)`` for every import of an
    mmrep module in the file at ``path`` (module ``name``, by default the
    one its place in the repository gives)."""
    name = name or module_name(path)
    package = name if path.endswith('__init__.py') else name.rpartition('.')[0]
    tree = ast.parse(open(path).read(), path)
    found = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(
                child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            targets = []
            if isinstance(child, ast.Import):
                targets = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split('.')
                    base = base[:len(base) - child.level + 1]
                    targets = ['.'.join(base + ([child.module]
                                                if child.module else []))]
                else:
                    targets = [child.module]
            found.extend((t, child.lineno, in_function) for t in targets
                         if t and (t == 'mmrep' or t.startswith('mmrep.')))
            visit(child, inner)
    visit(tree, False)
    return found


SOURCES = sorted(glob.glob(osp.join(REPO, 'mmrep', '**', '*.py'),
                           recursive=True))


@pytest.mark.parametrize('path', SOURCES,
                         ids=lambda p: osp.relpath(p, REPO))
def test_imports_go_down_at_module_level(path):
    here = layer_of(module_name(path))
    for target, line, in_function in mmrep_imports(path):
        where = f'{osp.relpath(path, REPO)}:{line} imports {target}'
        assert not in_function, f'{where} inside a function body'
        there = layer_of(target)
        assert LAYERS[there] <= LAYERS[here], \
            f'{where}: {there} is above {here}'


def test_tools_import_no_other_tool():
    tools = {osp.basename(p)[:-3]
             for p in glob.glob(osp.join(REPO, 'tools', '*.py'))}
    for path in sorted(glob.glob(osp.join(REPO, 'tools', '*.py'))):
        tree = ast.parse(open(path).read(), path)
        for node in ast.walk(tree):
            names = [a.name for a in node.names] \
                if isinstance(node, ast.Import) else \
                [node.module or ''] if isinstance(node, ast.ImportFrom) \
                and not node.level else []
            for name in names:
                assert name.split('.')[0] not in tools, \
                    f'{osp.relpath(path, REPO)}:{node.lineno} imports the ' \
                    f'tool {name}'
            if isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    private = alias.name.startswith('_') and \
                        not alias.name.startswith('__')
                    assert not (node.module or '').startswith('mmrep') or \
                        not private, \
                        f'{osp.relpath(path, REPO)}:{node.lineno} imports ' \
                        f'the private {node.module}.{alias.name}'


def test_the_checker_sees_a_bad_import(tmp_path):
    """The checker itself: an upward import inside a function is found,
    resolved to its absolute name and placed in the higher layer."""
    bad = tmp_path / 'bad.py'
    bad.write_text('import torch\n\n\ndef f():\n'
                   '    from ...checkpoints import load_pretrained\n')
    imports = mmrep_imports(str(bad), 'mmrep.models.layers.bad')
    assert imports == [('mmrep.checkpoints', 5, True)]
    assert LAYERS[layer_of('mmrep.checkpoints')] > \
        LAYERS[layer_of('mmrep.models.layers.bad')]


def test_fixtures_in_the_repository_hold_every_shared_fixture():
    """``tests/data`` is the fixtures' home; a fixture set published beside
    the repository (``../shared/fixtures``, where one exists) is copied in
    whole, byte for byte."""
    import filecmp
    shared = osp.join(REPO, '..', 'shared', 'fixtures')
    if not osp.isdir(shared):
        pytest.skip('no ../shared/fixtures beside this clone')
    data = osp.join(REPO, 'tests', 'data')
    names = sorted(n for n in os.listdir(shared) if n != 'README.md')
    assert names
    missing = [n for n in names if not osp.isfile(osp.join(data, n))]
    assert not missing, f'copy into tests/data: {missing}'
    differ = [n for n in names if not filecmp.cmp(
        osp.join(shared, n), osp.join(data, n), shallow=False)]
    assert not differ, f'tests/data differs from ../shared/fixtures: {differ}'


#: What a test may take from a tool module.
TOOL_ENTRY_POINTS = ('main', 'parse_args')


def tool_logic_uses(source, name='<test>'):
    """Where a test module takes logic from a tool.

    Args:
        source (str): the test module's source.
        name (str): its file name, for the parser.

    Returns:
        list[tuple[int, str]]: ``(line, what)`` for every ``load_tool(...)``
        not followed directly by ``.main`` or ``.parse_args`` (kept in a
        variable, or another attribute taken), and every import of a module
        named like a tool of tools/.
    """
    tools = {osp.basename(p)[:-3]
             for p in glob.glob(osp.join(REPO, 'tools', '*.py'))}
    tools -= INSTALL_HELPERS  # standard library only, before mmrep exists
    tree = ast.parse(source, name)
    parents = {child: node for node in ast.walk(tree)
               for child in ast.iter_child_nodes(node)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            called = func.id if isinstance(func, ast.Name) else \
                func.attr if isinstance(func, ast.Attribute) else None
            if called != 'load_tool':
                continue
            parent = parents.get(node)
            if not (isinstance(parent, ast.Attribute)
                    and parent.attr in TOOL_ENTRY_POINTS):
                what = parent.attr if isinstance(parent, ast.Attribute) \
                    else type(parent).__name__
                found.append((node.lineno, f'load_tool(...) used as {what}'))
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, f'import {a.name}') for a in node.names
                         if a.name.split('.')[0] in tools)
        elif isinstance(node, ast.ImportFrom) and not node.level:
            if (node.module or '').split('.')[0] in tools:
                found.append((node.lineno, f'from {node.module} import'))
    return sorted(found)


TEST_MODULES = sorted(
    p for p in glob.glob(osp.join(REPO, 'tests', '*.py'))
    if osp.basename(p) != 'tool_runner.py')  # defines load_tool


@pytest.mark.parametrize('path', TEST_MODULES, ids=osp.basename)
def test_tests_take_no_logic_from_tools(path):
    with open(path) as f:
        uses = tool_logic_uses(f.read(), path)
    assert not uses, '; '.join(f'{osp.relpath(path, REPO)}:{line}: {what}'
                               for line, what in uses)


def test_the_checker_sees_tool_logic_in_a_test():
    """The checker itself: a translator taken from a tool, a tool module
    kept in a variable and a tool imported by name are found; running
    ``main`` or ``parse_args`` is not."""
    source = (
        "from tool_runner import load_tool\n"
        "import convert_checkpoint\n"
        "arch = load_tool('convert_checkpoint').mmrep_arch('repvgg', {})\n"
        "tool = load_tool('reparam')\n"
        "load_tool('train').main(['x.py'])\n"
        "load_tool('test').parse_args(['x.py', 'y.pth'])\n")
    assert tool_logic_uses(source) == [
        (2, 'import convert_checkpoint'),
        (3, 'load_tool(...) used as mmrep_arch'),
        (4, 'load_tool(...) used as Assign')]
