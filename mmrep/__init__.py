"""mmrep: structurally re-parameterized MLP backbones for OpenMMLab.

``import mmrep`` registers mmrep's modules and changes nothing else in the
process but two named entries (tests/project/test_layout.py checks it in a fresh
interpreter: no file written, no torch or mmengine global changed beyond
these):

* mmrep's registries (scope ``mmrep``, children of mmengine's roots, see
  mmrep/registry.py), which is what importing a plugin is for;
* ``mmengine.config.utils.MODULE2PACKAGE['mmrep']``, so that a config read
  after ``import mmrep`` may name ``_base_ = 'mmrep::<folder>/<file>.py'``
  (mmrep/utils/config_names.py; docs/en/get_started.md says where that
  works).

It also checks the versions of mmengine and mmcv, failing in one line.
What else mmrep offers that changes a process is opt-in, by name: the
fused-file switch of whole models in any loader (``custom_imports``
naming ``mmrep.deploy.autoswitch``, as the shipped configs do) and the
mmdeploy shim (``mmrep.apis.mmdeploy_compat``, named by
configs/mmdeploy/).
"""
# mmengine and mmcv outside their supported ranges fail here, in one line,
# before anything imports them.
from .dependencies import check_required_versions

check_required_versions()

from .version import __version__  # noqa: E402

# ``mmrep::<folder>/<config>.py`` names in ``_base_`` (configs shipped in
# mmrep/.mim): adds 'mmrep' to mmengine.config.utils.MODULE2PACKAGE.
from .utils.config_names import register_config_package  # noqa: E402

register_config_package()

# ``checkpoints`` registers the loader behind ``init_cfg=Pretrained``.
from . import checkpoints, deploy, models  # noqa: E402,F401
from .checkpoints import load_pretrained  # noqa: E402
from .deploy import reparameterize_model  # noqa: E402
from .utils.errors import MmrepError  # noqa: E402

__all__ = ['__version__', 'reparameterize_model', 'load_pretrained',
           'MmrepError']
