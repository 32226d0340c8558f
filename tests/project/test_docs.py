"""The documentation holds together: README.md links every page of docs/,
every relative markdown link of README.md, docs/ and the other READMEs
points to an existing file (no anchors, which nothing checks), and every
repository path the README and docs name exists. Reads text only."""
import glob
import os.path as osp
import re

from conftest import REPO

#: ``[text](target)`` and ``![alt](target)``; the target ends at the first
#: space or closing parenthesis.
LINK = re.compile(r'!?\[[^\]]*\]\(([^)\s]+)\)')
#: A repository path such as ``tests/deploy/test_deploy.py`` or
#: ``configs/cityscapes/README.md``; patterns (``b{3,4,5}``, ``*``) and
#: paths inside longer ones (``work_dirs/.../tools/x.py``) are left out.
REPO_PATH = re.compile(
    r'(?<![\w./-])((?:tests|tools|benchmarks|configs|mmrep|requirements|'
    r'\.ci|docs)/[\w./-]*\w\.(?:py|sh|md|yml|txt|json))(?![\w*{])')
#: Paths the docs name in other projects' source trees, not in this one.
OTHER_PROJECTS = {
    'tools/dataset_converters/cityscapes.py',  # mmsegmentation's
    'tools/model_converters/reparameterize_model.py',  # mmpretrain's
}


def rel(path):
    return osp.relpath(path, REPO)


def docs_pages():
    return sorted(glob.glob(osp.join(REPO, 'docs', '**', '*.md'),
                            recursive=True))


def markdown_files():
    """README.md, every docs/ page and the READMEs beside configs,
    benchmarks and the test data."""
    return [osp.join(REPO, 'README.md'), *docs_pages(),
            osp.join(REPO, 'benchmarks', 'README.md'),
            osp.join(REPO, 'tests', 'data', 'README.md'),
            *sorted(glob.glob(osp.join(REPO, 'configs', '*', 'README.md')))]


def prose(path):
    """The file's text without fenced code blocks and inline code spans,
    where brackets and parentheses are code, not links."""
    with open(path, encoding='utf-8') as f:
        text = f.read()
    text = re.sub(r'^```.*?^```', '', text, flags=re.M | re.S)
    return re.sub(r'`[^`]*`', '', text)


def relative_links(path):
    return [t for t in LINK.findall(prose(path))
            if not re.match(r'[a-z][a-z0-9+.-]*:', t)]  # http:, mailto: ...


def test_docs_exist():
    assert len(docs_pages()) >= 10, 'docs/ lost its pages'


def test_relative_links_resolve():
    broken = []
    for path in markdown_files():
        for target in relative_links(path):
            if '#' in target:
                broken.append(f'{rel(path)}: {target} (anchor)')
            elif not osp.isfile(osp.join(osp.dirname(path), target)):
                broken.append(f'{rel(path)}: {target} (no such file)')
    assert not broken, broken


def test_readme_links_every_docs_page():
    readme = osp.join(REPO, 'README.md')
    linked = {osp.normpath(osp.join(REPO, t)) for t in relative_links(readme)}
    missing = [rel(p) for p in docs_pages() if osp.normpath(p) not in linked]
    assert not missing, f'README.md does not link {missing}'


def test_readme_stays_short():
    """The README holds what a newcomer needs first (the commands, the demo,
    the backbone and model tables, the documentation list); the rest lives
    in docs/."""
    with open(osp.join(REPO, 'README.md'), encoding='utf-8') as f:
        lines = f.read().splitlines()
    assert len(lines) <= 250, f'README.md has {len(lines)} lines'


def test_named_paths_exist():
    """Every repository path the README and docs name (the tests that
    check a claim, the tools, benchmarks and configs) exists."""
    missing = []
    for path in [osp.join(REPO, 'README.md'), *docs_pages()]:
        with open(path, encoding='utf-8') as f:
            text = f.read()
        for name in sorted(set(REPO_PATH.findall(text)) - OTHER_PROJECTS):
            if not osp.exists(osp.join(REPO, name)):
                missing.append(f'{rel(path)}: {name}')
    assert not missing, missing
