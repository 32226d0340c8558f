"""``mmrep::`` config names: ``mmrep::cityscapes/<config>.py`` for the
configs that ship inside the package, in ``_base_`` (and through
:func:`mmrep.apis.read_config`), as mmengine reads ``mmseg::`` / ``mmdet::`` /
``mmpretrain::`` names.

mmengine (0.10.x) resolves ``package::path`` only for the packages listed in
its ``mmengine.config.utils.MODULE2PACKAGE`` and looks the file up under
``<installed path>/.mim/configs/path``, with ``<installed path>/.mim/
model-index.yml`` read first. ``setup.py`` puts configs/, tools/ and
model-index.yml into ``mmrep/.mim``: copies in wheels and sdist-built
installs, symbolic links for editable installs.
"""
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

PACKAGE_DIR = osp.dirname(osp.dirname(osp.abspath(__file__)))


def register_config_package():
    """Make mmengine resolve ``mmrep::`` config names in ``_base_``.

    Sets ``mmengine.config.utils.MODULE2PACKAGE['mmrep']`` (to
    :data:`ANCHOR_MODULE`), so ``_base_ = ['mmrep::...']`` and
    ``Config._get_cfg_path('mmrep::...', ...)`` look in
    ``mmrep/.mim/configs``: links to the checkout's folders in a source
    checkout (setup.py makes them when the package is installed, editable
    or not) and copies in a wheel. mmengine's registries also consult this
    mapping: a registry of scope ``mmrep`` without ``locations`` would be
    populated by calling ``mmrep.utils.register_all_modules``, which does
    not exist; every mmrep registry therefore names its ``locations``.
    ``Config.fromfile`` itself is not changed: a ``package::path`` name
    given directly is read by :func:`mmrep.apis.read_config`.

    Returns:
        str: the directory mmengine reads ``mmrep::`` configs from.
    """
    from mmengine.config.utils import MODULE2PACKAGE

    MODULE2PACKAGE['mmrep'] = ANCHOR_MODULE
    return osp.join(PACKAGE_DIR, '.mim', 'configs')
