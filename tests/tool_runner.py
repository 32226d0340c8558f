"""Run the command-line tools in tools/ in this process (fast) or as a
subprocess (as a user would)."""
import importlib.util
import os.path as osp
import subprocess
import sys

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TOOLS = osp.join(REPO, 'tools')
DEMO = osp.join(REPO, 'configs', 'cityscapes',
                'demo_upernet_repmlpnet-tiny_1xb8-cpu_cityscapes-synthetic.py')
#: Helpers of tools/install.sh: they run under the interpreter being
#: installed into, before mmrep (or anything but the standard library) is
#: there, and answer install.sh, not a user; so their logic stays in the
#: script (its tests import it) and they keep their own error output.
INSTALL_HELPERS = frozenset({'install_plan'})


def load_tool(name):
    """Import ``tools/<name>.py`` under a private module name.

    Args:
        name (str): ``train``, ``test``, ``reparam`` or ``export_onnx``.

    Returns:
        module: the tool's module (its ``main(argv)`` runs it).
    """
    module_name = f'mmrep_tool_{name}'
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(
        module_name, osp.join(TOOLS, f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def main_or_error(name, argv):
    """Run ``tools/<name>.py``'s ``main(argv)`` in this process.

    Args:
        name (str): the tool.
        argv (list[str]): its arguments.

    Returns:
        int | str: what ``main`` returned, or the one ``error:`` line it
        exits with (checked to be one line).
    """
    try:
        return load_tool(name).main(argv)
    except SystemExit as e:
        assert isinstance(e.code, str) and e.code.startswith('error: ') \
            and '\n' not in e.code, e.code
        return e.code


def run_tool(*args, ok=True, env=None):
    """Run ``python tools/...`` in the repository.

    Args:
        *args (str): the script and its arguments.
        ok (bool): assert a zero exit status.
        env (dict, optional): the environment.

    Returns:
        subprocess.CompletedProcess: with ``stdout`` (stderr merged).
    """
    proc = subprocess.run([sys.executable, *args], cwd=REPO, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          env=env)
    if ok:
        assert proc.returncode == 0, proc.stdout[-4000:]
    return proc


def train_then_test(config, work, options, metrics_file):
    """Train a config through ``tools/train.py``, check the fused file the
    deploy hook wrote beside the last checkpoint, and evaluate that
    checkpoint through ``tools/test.py``.

    Args:
        config (str): the config file; its run ends at ``iter_2.pth``.
        work (str): the work directory.
        options (list[str]): ``--cfg-options`` and its items, for both
            tools.
        metrics_file (str): where ``tools/test.py`` writes the metrics.

    Returns:
        tuple[str, dict]: the training output and the metrics.
    """
    import json

    from mmrep.utils import safe_load
    out = run_tool('tools/train.py', config, '--work-dir', work,
                   *options).stdout
    assert 'Iter(train) [2/2]' in out, out[-3000:]
    fused = safe_load(osp.join(work, 'iter_2_deploy.pth'))
    assert fused['meta']['source_checkpoint'] == 'iter_2.pth'
    assert "type='mmrep." in fused['meta']['deploy_config']
    run_tool('tools/test.py', config, osp.join(work, 'iter_2.pth'),
             '--work-dir', work, '--out-metrics', metrics_file, *options)
    with open(metrics_file) as f:
        return out, json.load(f)
