"""mmrep: structurally re-parameterized MLP backbones for OpenMMLab."""
# mmengine and mmcv outside their supported ranges fail here, in one line,
# before anything imports them.
from .dependencies import check_required_versions

check_required_versions()

from .utils.serialization import allow_checkpoint_globals  # noqa: E402
from .version import __version__  # noqa: E402

# mmengine's resume needs its own log buffers and numpy objects to pass
# torch's weights-only unpickler; allow exactly those.
allow_checkpoint_globals()

# ``checkpoints`` registers the loader behind ``init_cfg=Pretrained``.
from . import checkpoints, deploy, models  # noqa: E402,F401
from .checkpoints import load_pretrained  # noqa: E402
from .deploy import reparameterize_model  # noqa: E402

__all__ = ['__version__', 'reparameterize_model', 'load_pretrained']
