"""The deploy form of mmseg's ``UPerHead`` (:mod:`mmrep.deploy.heads`).

This module imports all of ``mmseg.models``: mmrep's ``MODELS`` registry
imports it on the first lookup of ``DeployUPerHead`` (a config's
``type='mmrep.DeployUPerHead'``, :func:`~mmrep.deploy.heads.deploy_uper_head`,
:func:`~mmrep.reparameterize_model` on a model with a ``UPerHead``), never
``import mmrep``. Without a usable mmseg (absent, out of range, or failing
its own import checks; an unusable one is logged once) it defines and
registers nothing, and the lookup finds nothing.
"""
import torch
import torch.nn.functional as F

from ..dependencies import optional_library
from ..registry import MODELS
from .heads import NEEDED_FOR, conv3x3_of_resized

if optional_library('mmseg', needed_for=NEEDED_FOR):
    from mmseg.models.decode_heads import UPerHead
    from mmseg.models.utils import resize

    @MODELS.register_module()
    class DeployUPerHead(UPerHead):
        """mmseg's ``UPerHead`` whose ``fpn_bottleneck`` convolution reads
        the three resized FPN maps at their own resolution
        (:func:`~mmrep.deploy.heads.conv3x3_of_resized`); same parameters,
        same outputs.

        :func:`mmrep.reparameterize_model` turns a ``UPerHead`` into this
        class, and deploy configs name it (``mmrep.DeployUPerHead``). A
        bottleneck this form does not cover (not a 3x3, stride-1,
        padding-1 convolution first, or ``align_corners=True``) runs as
        mmseg's.
        """

        def _decomposable(self):
            module = self.fpn_bottleneck
            conv = module.conv
            return (not self.align_corners and module.order[0] == 'conv'
                    and not module.with_explicit_padding
                    and isinstance(conv, torch.nn.Conv2d)
                    and conv.kernel_size == (3, 3) and conv.stride == (1, 1)
                    and conv.padding == (1, 1) and conv.dilation == (1, 1)
                    and conv.groups == 1 and conv.padding_mode == 'zeros')

        def _forward_feature(self, inputs):
            if not self._decomposable():
                return super()._forward_feature(inputs)
            inputs = self._transform_inputs(inputs)
            laterals = [conv(inputs[i])
                        for i, conv in enumerate(self.lateral_convs)]
            laterals.append(self.psp_forward(inputs))
            for i in range(len(laterals) - 1, 0, -1):
                laterals[i - 1] = laterals[i - 1] + resize(
                    laterals[i], size=laterals[i - 1].shape[2:],
                    mode='bilinear', align_corners=False)
            maps = [fpn_conv(lateral) for fpn_conv, lateral in zip(
                self.fpn_convs, laterals[:-1])] + [laterals[-1]]
            module = self.fpn_bottleneck
            weight = module.conv.weight.split(
                [m.shape[1] for m in maps], dim=1)
            size = maps[0].shape[2:]
            out = F.conv2d(maps[0], weight[0], module.conv.bias, padding=1)
            for x, w in zip(maps[1:], weight[1:]):
                out = out + conv3x3_of_resized(x, w, size)
            for layer in module.order[1:]:
                if layer == 'norm' and module.with_norm:
                    out = module.norm(out)
                elif layer == 'act' and module.with_activation:
                    out = module.activate(out)
            return out
