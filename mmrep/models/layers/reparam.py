"""The switch to the fused form, under every name and in every walk order
the libraries that fuse use.

Each library that re-parameterizes calls its own name on the modules it
finds, in its own order:

* mmpretrain's ``reparameterize_model.py`` converter, mmdeploy's
  ``build_pytorch_model`` and the mmseg/mmdet projects call
  ``switch_to_deploy()`` on the backbone (and on the model where it has one);
* timm's ``reparameterize_model`` calls ``reparameterize()`` on every
  module below the root, parents before their children;
* :func:`mmrep.reparameterize_model` calls ``reparameterize()`` children
  before their parents.

A module with a fused form subclasses :class:`Reparameterizable` and
implements :meth:`~Reparameterizable.fuse_own`, its own step, which may
rely on every descendant being fused already. ``reparameterize()`` (and
``switch_to_deploy()``, the same call) first fuses the unfused modules
below it (:func:`reparameterize_tree`), then takes that step. Every step
is idempotent, so whichever order a library walks in, and however often it
calls, the result is the same model.
"""
import torch


class Reparameterizable:
    """Mixin of the modules that have a fused (deploy) form.

    A subclass implements :meth:`fuse_own` and a ``deploy`` attribute or
    property that is True once the module is fused.
    """

    def fuse_own(self):
        """This module's own step of the switch, in place; every
        re-parameterizable descendant is fused when it is called. Does
        nothing when the module is fused already."""
        raise NotImplementedError

    def reparameterize(self):
        """Switch this module and everything below it to the fused form, in
        place (eval-mode semantics: BatchNorms fold with their running
        statistics). Calling it again changes nothing."""
        with torch.no_grad():
            for child in self.children():
                reparameterize_tree(child)
            self.fuse_own()

    def switch_to_deploy(self):
        """The name mmpretrain, mmdeploy and the OpenMMLab projects call:
        the same as :meth:`reparameterize`."""
        self.reparameterize()


def reparameterize_tree(module):
    """Fuse every :class:`Reparameterizable` module in ``module``'s subtree
    (``module`` included), each after its descendants.

    Args:
        module (nn.Module): any module.
    """
    if isinstance(module, Reparameterizable):
        module.reparameterize()
        return
    for child in module.children():
        reparameterize_tree(child)


def has_unfused(module):
    """Whether any :class:`Reparameterizable` module strictly below
    ``module`` is not fused.

    Args:
        module (nn.Module): any module.

    Returns:
        tuple[bool, bool]: ``(found, unfused)``: whether there is any
        re-parameterizable module below ``module``, and whether one of them
        is not fused.
    """
    found = [m for m in module.modules()
             if m is not module and isinstance(m, Reparameterizable)]
    return bool(found), any(not m.deploy for m in found)
