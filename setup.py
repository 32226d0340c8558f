"""mmrep's build: the requirements files give install_requires and the extras;
configs/, tools/ and model-index.yml go into the package as ``mmrep/.mim``
(OpenMMLab's layout, read by mim and by mmengine's ``mmrep::`` names)."""
import os
import os.path as osp
import shutil
import sys

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = osp.dirname(osp.abspath(__file__))

#: What ``mmrep/.mim`` holds: folders and files of the repository root.
MIM_CONTENT = ('configs', 'tools', 'model-index.yml')


def get_version():
    """The version in mmrep/version.py (read without importing mmrep, whose
    import needs mmengine and mmcv)."""
    scope = {}
    with open(osp.join(HERE, 'mmrep', 'version.py')) as f:
        exec(compile(f.read(), 'mmrep/version.py', 'exec'), scope)
    return scope['__version__']


def readme():
    with open(osp.join(HERE, 'README.md'), encoding='utf-8') as f:
        return f.read()


def parse_requirements(fname, names=None):
    """The requirement lines of a requirements file, as written.

    Blank lines and ``#`` comments are skipped and ``-r other.txt`` lines are
    read in place (relative to the file).

    Args:
        fname (str): the file, relative to the repository root.
        names (set[str], optional): keep only the requirements of these
            distributions.

    Returns:
        list[str]: e.g. ``['mmcv>=2.1.0,<2.2.0', 'numpy']``.
    """
    path = osp.join(HERE, fname)
    found = []
    with open(path) as f:
        for line in f:
            line = line.split('#', 1)[0].strip()
            if not line:
                continue
            if line.startswith(('-r ', '--requirement ')):
                other = osp.join(osp.dirname(fname), line.split(None, 1)[1])
                found.extend(parse_requirements(other, names))
                continue
            if names is None or requirement_name(line) in names:
                found.append(line)
    return found


def requirement_name(line):
    """The distribution a requirement line names, lower case."""
    for sep in ('[', ';', '@', '=', '<', '>', '!', '~', ' '):
        line = line.split(sep, 1)[0]
    return line.strip().lower()


def unique(requirements):
    return list(dict.fromkeys(requirements))


def add_mim_extension():
    """Link ``mmrep/.mim/{configs,tools,model-index.yml}`` to the repository
    for an editable install (``pip install -e``, ``setup.py develop``).

    Other builds copy them (:class:`BuildPyWithMim`), into the build
    directory only: the checkout's ``mmrep/.mim`` stays a set of links, so
    building a wheel never leaves stale copies behind for an editable
    install of the same checkout.
    """
    if not {'develop', 'editable_wheel'} & set(sys.argv[1:]):
        return
    mim = osp.join(HERE, 'mmrep', '.mim')
    os.makedirs(mim, exist_ok=True)
    for name in MIM_CONTENT:
        link = osp.join(mim, name)
        if osp.islink(link):
            os.remove(link)
        elif osp.isdir(link):
            shutil.rmtree(link)
        elif osp.exists(link):
            os.remove(link)
        os.symlink(osp.relpath(osp.join(HERE, name), mim), link)


class BuildPyWithMim(build_py):
    """``build_py`` that also copies configs/, tools/ and model-index.yml into
    ``<build dir>/mmrep/.mim`` (wheels, sdist-built and non-editable
    installs)."""

    def run(self):
        super().run()
        if getattr(self, 'editable_mode', False):
            return  # editable installs read the checkout (links)
        mim = osp.join(self.build_lib, 'mmrep', '.mim')
        if osp.isdir(mim) and not osp.islink(mim):
            shutil.rmtree(mim)  # left by an earlier build
        elif osp.lexists(mim):
            os.remove(mim)
        os.makedirs(mim)
        ignore = shutil.ignore_patterns('__pycache__', '*.pyc')
        for name in MIM_CONTENT:
            src = osp.join(HERE, name)
            if not osp.exists(src):
                raise FileNotFoundError(
                    f'{src} is missing: mmrep/.mim cannot be built')
            if osp.isdir(src):
                shutil.copytree(src, osp.join(mim, name), ignore=ignore)
            else:
                shutil.copyfile(src, osp.join(mim, name))


#: Distributions of requirements/downstream.txt per extra.
DOWNSTREAM = {
    'seg': {'mmsegmentation', 'ftfy', 'regex'},
    'det': {'mmdet'},
    'pretrain': {'mmpretrain'},
}

if __name__ == '__main__':
    add_mim_extension()
    extras = {
        'tests': parse_requirements('requirements/tests.txt'),
        'deploy': parse_requirements('requirements/deploy.txt'),
        'mim': parse_requirements('requirements/mminstall.txt'),
    }
    for extra, names in DOWNSTREAM.items():
        extras[extra] = parse_requirements('requirements/downstream.txt',
                                           names)
    extras['all'] = unique(
        extras['tests'] + extras['deploy'] + extras['seg'] + extras['det'] +
        extras['pretrain'])
    setup(
        name='mmrep',
        version=get_version(),
        description='Structurally re-parameterized MLP backbones (RepMLPNet, '
        'CycleMLP, RepMLP-ResNet, RepVGG) for mmsegmentation, mmdetection '
        'and mmpretrain',
        long_description=readme(),
        long_description_content_type='text/markdown',
        keywords='computer vision, re-parameterization, MLP, OpenMMLab',
        packages=find_packages(include=['mmrep', 'mmrep.*']),
        include_package_data=False,
        cmdclass={'build_py': BuildPyWithMim},
        python_requires='>=3.8',
        install_requires=parse_requirements('requirements/runtime.txt'),
        extras_require=extras,
        license='Apache-2.0',
        license_files=['LICENSE', 'NOTICE'],
        classifiers=[
            'Development Status :: 4 - Beta',
            'Operating System :: OS Independent',
            'Programming Language :: Python :: 3',
            'Programming Language :: Python :: 3.8',
            'Programming Language :: Python :: 3.9',
            'Programming Language :: Python :: 3.10',
            'Programming Language :: Python :: 3.11',
            'Topic :: Scientific/Engineering :: Artificial Intelligence',
        ],
        zip_safe=False)
