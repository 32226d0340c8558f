import os.path as osp

from setuptools import find_packages, setup

here = osp.dirname(osp.abspath(__file__))
version = {}
with open(osp.join(here, 'mmrep', 'version.py')) as f:
    exec(f.read(), version)

setup(
    name='mmrep',
    version=version['__version__'],
    description='Structurally re-parameterized MLP backbones (RepMLPNet, '
    'CycleMLP, RepMLP-ResNet, RepVGG) for mmsegmentation, mmdetection and '
    'mmpretrain',
    packages=find_packages(include=['mmrep', 'mmrep.*']),
    python_requires='>=3.8',
    install_requires=['mmengine==0.10.7'],
    license='Apache-2.0',
)
