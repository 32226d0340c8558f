"""The package layering docs/en/advanced/developers.md describes: imports
between mmrep's packages only at module level, only downwards
(utils <- layers <- backbones <- checkpoints / deploy <- apis <- tools), no
tool importing another tool, and no test importing logic from a tool: the
tests take what they check from the package and run a tool only through
``load_tool(name).main`` (or ``.parse_args``)."""
import ast
import inspect
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
    p for p in glob.glob(osp.join(REPO, 'tests', '**', '*.py'),
                         recursive=True)
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


# ---------------------------------------------------------------------------
# One place per family: each family's checkpoint knowledge is declared in its
# own file (mmrep.models.backbones.family); nothing else names its keys.
# ---------------------------------------------------------------------------
#: Key components that are common words of the sources' vocabularies
#: (timm's ``stages``, mmpretrain's ``norm`` and ``patch_embed``, an SE
#: block's ``attn``): one family's model has them, another family's sources
#: name them too.
COMMON_KEY_WORDS = {'stages', 'norm', 'attn', 'mlp', 'proj', 'patch_embed'}


def family_key_fragments():
    """``{family file: fragments}``: the dotted key components that only
    this family's state dicts have (its smallest preset, train-time and
    fused, built on the meta device; trailing digits dropped), except
    :data:`COMMON_KEY_WORDS`, and the ``key_marks`` of its sources (the
    names only a source's checkpoints have)."""
    import re

    import torch

    from mmrep.checkpoints import CHECKPOINT_FAMILIES
    components = {}
    for name, family in CHECKPOINT_FAMILIES.items():
        found = set()
        for deploy in (False, True):
            with torch.device('meta'):
                model = family.model(arch=next(iter(family.model.arch_zoo)),
                                     deploy=deploy)
            for key in model.state_dict():
                found.update(re.sub(r'\d+$', '', part)
                             for part in key.split('.')[:-1]
                             if not part.isdigit())
        components[name] = found
    fragments = {}
    for name, family in CHECKPOINT_FAMILIES.items():
        others = set().union(*(c for n, c in components.items()
                               if n != name))
        marks = {m for s in family.sources for m in s.key_marks}
        path = inspect.getsourcefile(family.model)
        fragments[osp.relpath(path, REPO)] = sorted(
            (components[name] - others - COMMON_KEY_WORDS) | marks)
    return fragments


def names_a_key(text, fragment):
    """Whether ``text`` uses ``fragment`` as a key component (followed by a
    dot, or an escaped dot in a regular expression)."""
    import re
    return re.search(r'(?<![A-Za-z0-9_])' + re.escape(fragment) +
                     r'\d*(?=\\?\.)', text) is not None


def key_names_in(path, fragments):
    """``(line, fragment)`` for every string constant of the file (not a
    docstring) that names a key with one of ``fragments``."""
    tree = ast.parse(open(path).read(), path)
    docs = set()
    for node in ast.walk(tree):
        body = getattr(node, 'body', None)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                             ast.AsyncFunctionDef)) and body and \
                isinstance(body[0], ast.Expr) and \
                isinstance(body[0].value, ast.Constant):
            docs.add(id(body[0].value))
    return [(node.lineno, f) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and id(node) not in docs
            for f in fragments if names_a_key(node.value, f)]


FAMILY_KEYS = family_key_fragments()
CODE_FILES = sorted(glob.glob(osp.join(REPO, 'mmrep', '**', '*.py'),
                              recursive=True) +
                    glob.glob(osp.join(REPO, 'tools', '*.py')))


@pytest.mark.parametrize('path', CODE_FILES,
                         ids=[osp.relpath(p, REPO) for p in CODE_FILES])
def test_no_module_outside_a_family_file_names_its_keys(path):
    rel = osp.relpath(path, REPO)
    found = [(family, line, f)
             for family, fragments in FAMILY_KEYS.items() if family != rel
             for line, f in key_names_in(path, fragments)]
    assert not found, (f'{rel} names keys of another family\'s file '
                       f'(family file, line, fragment): {found}')


def test_every_family_has_key_fragments_to_check():
    assert len(FAMILY_KEYS) == 4
    for family, fragments in FAMILY_KEYS.items():
        assert fragments, family
    repvgg = FAMILY_KEYS['mmrep/models/backbones/repvgg.py']
    assert {'rbr_dense', 'rbr_reparam', 'branch_3x3', 'conv_kxk'} <= \
        set(repvgg)


def test_the_key_checker_sees_a_family_key(tmp_path):
    bad = tmp_path / 'bad.py'
    bad.write_text('"""rbr_dense.conv in a docstring is prose."""\n'
                   "KEY = 'stage1.0.rbr_dense.conv.weight'\n"
                   "PATTERN = r'^branch_3x3\\.norm'\n"
                   "FINE = 'rbr_dense'\n")
    fragments = FAMILY_KEYS['mmrep/models/backbones/repvgg.py']
    assert sorted(f for _, f in key_names_in(str(bad), fragments)) == [
        'branch_3x3', 'rbr_dense']


def test_every_registered_backbone_declares_its_family():
    from mmrep.checkpoints import CHECKPOINT_FAMILIES
    from mmrep.models.backbones.base import RepBackbone
    from mmrep.registry import MODELS
    MODELS.import_from_location()
    registered = {cls for cls in MODELS.module_dict.values()
                  if isinstance(cls, type) and issubclass(cls, RepBackbone)}
    declared = {f.model for f in CHECKPOINT_FAMILIES.values()}
    assert registered == declared
    for family in CHECKPOINT_FAMILIES.values():
        # The family's declaration lives in the model's own file.
        assert inspect.getsourcefile(family.source('original').to_mmrep) \
            .endswith('family.py') or inspect.getsourcefile(
                family.source('original').to_mmrep) == \
            inspect.getsourcefile(family.model)
        for source in family.sources[1:]:
            assert inspect.getsourcefile(source.to_mmrep) == \
                inspect.getsourcefile(family.model), (family.name,
                                                      source.name)


def test_assert_close_scales_with_magnitude():
    """The conformance check is 1e-4 absolute up to magnitude 1 and
    relative to the largest expected magnitude beyond: float32 rounding of
    large features passes, a real difference at any magnitude fails."""
    import torch
    from conftest import assert_close
    small = torch.tensor([0.5, -1.0])
    assert_close(small + 9e-5, small)
    with pytest.raises(AssertionError, match='max abs diff'):
        assert_close(small + 2e-4, small)
    large = torch.tensor([189.0, -3.0])
    assert_close(large + torch.tensor([1.3e-4, 0.0]), large)
    with pytest.raises(AssertionError, match='max abs diff'):
        assert_close(large + torch.tensor([0.0, 0.02]), large)


def probe_import(module):
    """What importing ``module`` in a fresh interpreter writes and changes
    (tests/import_probe.py)."""
    import json
    import subprocess
    import sys
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE='1')
    proc = subprocess.run(
        [sys.executable, osp.join(REPO, 'tests', 'import_probe.py'), module],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_import_mmrep_registers_and_changes_nothing_else():
    """``import mmrep`` in a fresh interpreter writes no file (no links,
    no caches) and changes no torch or mmengine global but
    ``MODULE2PACKAGE['mmrep']``: not torch's weights-only allow-list, no
    module hook, not ``Config.fromfile``, not the thread count."""
    seen = probe_import('mmrep')
    assert seen['writes'] == []
    assert list(seen['changed']) == ['module2package']
    before, after = seen['changed']['module2package']
    assert sorted(set(after) - set(before)) == ['mmrep']


def test_the_probe_sees_a_hook_and_a_write():
    """The opt-in module that installs the fused-file hook is seen doing
    it; a module that writes a file is seen writing."""
    seen = probe_import('mmrep.deploy.autoswitch')
    hooks = seen['changed']['module_hooks']
    assert hooks[1]['_global_module_registration_hooks'] == \
        hooks[0]['_global_module_registration_hooks'] + 1
    seen = probe_import('import_probe_writer')
    assert any(w.startswith('open ') and w.split()[1].endswith('written')
               for w in seen['writes']), seen['writes']
