"""``mmrep::`` config names: ``mmrep::cityscapes/<config>.py`` for the
configs that ship inside the package, in ``_base_`` and in
``Config.fromfile``, as mmengine reads ``mmseg::`` / ``mmdet::`` /
``mmpretrain::`` names.

mmengine (0.10.x) resolves ``package::path`` only for the packages listed in
its ``mmengine.config.utils.MODULE2PACKAGE`` and looks the file up under
``<installed path>/.mim/configs/path``, with ``<installed path>/.mim/
model-index.yml`` read first. ``setup.py`` puts configs/, tools/ and
model-index.yml into ``mmrep/.mim``: copies in wheels and sdist-built
installs, symbolic links for editable installs.
"""
import os
import os.path as osp

#: The module whose file's directory mmengine takes as mmrep's installed
#: path. mmengine's ``get_installed_path(name)`` returns
#: ``<distribution location>/<name>`` for an installed distribution ``name``,
#: a directory that does not exist for an editable install (its
#: ``site-packages`` holds only an import hook); for a name that is not a
#: distribution it falls back to ``dirname(find_spec(name).origin)``. A
#: module directly inside the package gives the directory of the mmrep that
#: is actually imported, whichever way it was installed.
ANCHOR_MODULE = 'mmrep.version'

#: What ``mmrep/.mim`` holds, relative to the repository root.
MIM_CONTENT = ('configs', 'tools', 'model-index.yml')

PACKAGE_DIR = osp.dirname(osp.dirname(osp.abspath(__file__)))


def register_config_package():
    """Make mmengine resolve ``mmrep::`` config names.

    Changes two things in mmengine, once per process:

    * ``mmengine.config.utils.MODULE2PACKAGE['mmrep']`` is set (to
      :data:`ANCHOR_MODULE`), so ``_base_ = ['mmrep::...']`` and
      ``Config._get_cfg_path('mmrep::...', ...)`` look in
      ``mmrep/.mim/configs``. mmengine's registries also consult this
      mapping: a registry of scope ``mmrep`` without ``locations`` would be
      populated by calling ``mmrep.utils.register_all_modules``, which does
      not exist; every mmrep registry therefore names its ``locations``.
    * ``Config.fromfile`` is wrapped so that a ``package::path`` name that is
      not an existing file is resolved as ``_base_`` resolves it (mmengine
      itself opens such a name as a plain file name and fails, for every
      package). Every other argument reaches mmengine unchanged.

    In a source checkout whose ``mmrep/.mim`` is missing (an editable install
    made before setup.py created it, or the checkout on ``PYTHONPATH``), the
    symbolic links setup.py would make are made here.

    Returns:
        str: the directory mmengine reads ``mmrep::`` configs from.
    """
    from mmengine.config import Config
    from mmengine.config.utils import MODULE2PACKAGE

    MODULE2PACKAGE['mmrep'] = ANCHOR_MODULE
    if not getattr(Config.fromfile, 'resolves_package_names', False):
        Config.fromfile = staticmethod(_accept_package_names(Config.fromfile))
    link_checkout_configs()
    return osp.join(PACKAGE_DIR, '.mim', 'configs')


def _accept_package_names(fromfile):
    """``Config.fromfile`` that also takes ``package::path`` names."""
    from mmengine.config import Config

    def wrapped(filename, *args, **kwargs):
        if isinstance(filename, str) and '::' in filename and \
                not osp.isfile(filename):
            filename = Config._get_cfg_path(filename, '')[0]
        return fromfile(filename, *args, **kwargs)

    wrapped.__doc__ = fromfile.__doc__
    wrapped.__name__ = fromfile.__name__
    wrapped.__qualname__ = fromfile.__qualname__
    wrapped.__wrapped__ = fromfile
    wrapped.resolves_package_names = True
    return wrapped


def link_checkout_configs(package_dir=PACKAGE_DIR):
    """Link ``mmrep/.mim/{configs,tools,model-index.yml}`` to the folders of
    the repository the package sits in, where they are missing.

    Does nothing for an installed copy (no repository around it: a wheel
    carries ``.mim`` itself) and nothing where the links cannot be made (a
    read-only checkout: ``mmrep::`` names then fail with mmengine's
    file-not-found error naming the ``.mim`` path).

    Args:
        package_dir (str): the ``mmrep`` package directory.

    Returns:
        list[str]: the links made.
    """
    root = osp.dirname(package_dir)
    if not osp.isfile(osp.join(root, 'setup.py')):
        return []
    mim = osp.join(package_dir, '.mim')
    made = []
    for name in MIM_CONTENT:
        target = osp.join(root, name)
        link = osp.join(mim, name)
        if not osp.exists(target) or osp.lexists(link):
            continue
        try:
            os.makedirs(mim, exist_ok=True)
            os.symlink(osp.relpath(target, mim), link)
        except FileExistsError:  # made meanwhile by another process
            continue
        except OSError:
            return made
        made.append(link)
    return made
