"""mmrep: structurally re-parameterized MLP backbones for OpenMMLab."""
# mmengine and mmcv outside their supported ranges fail here, in one line,
# before anything imports them.
from .dependencies import check_required_versions

check_required_versions()

from .version import __version__  # noqa: E402

# ``mmrep::<folder>/<config>.py`` names (configs shipped in mmrep/.mim). This
# changes mmengine: it adds 'mmrep' to mmengine.config.utils.MODULE2PACKAGE
# (read by ``_base_`` and by mmengine's registries) and wraps
# ``Config.fromfile`` to accept ``package::path`` names; see
# mmrep/utils/config_names.py.
from .utils.config_names import register_config_package  # noqa: E402

register_config_package()

# ``checkpoints`` registers the loader behind ``init_cfg=Pretrained``.
from . import checkpoints, deploy, models  # noqa: E402,F401
from .checkpoints import load_pretrained  # noqa: E402
from .deploy import reparameterize_model  # noqa: E402
from .utils.errors import MmrepError  # noqa: E402

# Fused weights load right through every API that loads a checkpoint into
# a config's model (mmengine's load_checkpoint, mmseg/mmdet/mmpretrain's
# init_model and inferencers). This installs one torch module-registration
# hook: a module that receives an mmrep backbone as a child (a segmentor,
# detector or classifier) registers a load_state_dict pre-hook that switches
# it to its fused form when the weights are exactly that form; see
# mmrep/deploy/fused_loading.py.
from .deploy.fused_loading import watch_parents  # noqa: E402

watch_parents()

__all__ = ['__version__', 'reparameterize_model', 'load_pretrained',
           'MmrepError']
