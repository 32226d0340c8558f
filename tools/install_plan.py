"""Decisions of ``tools/install.sh``: what to keep and what to install.

``tools/install.sh`` holds the version policy (supported and tested torch,
the mmcv release built from source) and runs the steps; this script looks at
what the target interpreter has installed and decides, one line each, what
is kept and what is installed. It runs under the interpreter being installed
into and needs nothing but the standard library (``packaging`` is taken from
pip's vendored copy where it is not installed).

The decisions are pure functions of the installed facts (:func:`decide`), so
they can be tested with made-up environments. Subcommands:

* ``plan``: probe the environment, print the keep/install lines and write
  a sourceable file of shell variables plus a pip constraints file.
* ``classify-wheel WHEEL``: ``cuda``, ``cpu`` or ``noops``: what an mmcv
  wheel's compiled ops were built with.
* ``place-wheel WHEEL``: move a built or legacy-cached mmcv wheel into the
  cache folder its content and the installed torch call for; prints the
  new path.
"""
import argparse
import json
import os
import os.path as osp
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import zipfile
from importlib import metadata

try:
    from packaging.requirements import Requirement
    from packaging.specifiers import SpecifierSet
    from packaging.version import InvalidVersion, Version
except ImportError:  # a bare virtual environment: pip vendors packaging
    from pip._vendor.packaging.requirements import Requirement
    from pip._vendor.packaging.specifiers import SpecifierSet
    from pip._vendor.packaging.version import InvalidVersion, Version

#: Requirement files read, in this order, for the OpenMMLab libraries and
#: the tools (mmcv is handled on its own: it is built, not resolved by pip).
REQUIREMENT_FILES = ('mminstall.txt', 'runtime.txt', 'downstream.txt',
                     'tests.txt', 'deploy.txt')
#: Requirement files installed with ``pip --no-deps`` (mmdeploy's own pins
#: would downgrade protobuf and onnx; what it needs is in deploy.txt).
NO_DEPS_FILES = ('mmdeploy.txt', )

#: Distributions that provide ``cv2``; any of them satisfies opencv-python.
OPENCV_DISTS = ('opencv-python', 'opencv-python-headless',
                'opencv-contrib-python', 'opencv-contrib-python-headless')

#: Bytes found in a compiled ``mmcv/_ext`` built with CUDA kernels (the
#: CUDA runtime and torch's CUDA library are linked in) and never in a
#: CPU-only build.
CUDA_MARKERS = (b'libc10_cuda.so', b'libcudart', b'__cudaRegisterFatBinary')


# ---------------------------------------------------------------- versions
def parse_version(text):
    try:
        return Version(text)
    except (InvalidVersion, TypeError):
        return None


def base_version(text):
    """``'2.14.1+cu130'`` -> ``'2.14.1'``."""
    return text.split('+')[0] if text else text


def torch_build(cuda_version):
    """The build tag of a torch: ``'13.0'`` -> ``'cu130'``, None -> cpu."""
    if not cuda_version:
        return 'cpu'
    return 'cu' + cuda_version.replace('.', '')


def expected_torchvision(torch_version):
    """The torchvision release made with a torch release, as a pip
    specifier: torch 2.M.P goes with torchvision 0.(M+15).P."""
    v = parse_version(base_version(torch_version))
    if v is None or v.major != 2:
        return None
    return f'torchvision=={v.major - 2}.{v.minor + 15}.{v.micro}'


def satisfies(installed, spec):
    """Whether an installed version is inside a specifier set ('' = any)."""
    if installed is None:
        return False
    v = parse_version(installed)
    if v is None:
        return False
    return SpecifierSet(spec).contains(v, prereleases=True)


def read_requirements(root, files=REQUIREMENT_FILES):
    """Requirement name -> (pip line, specifier) from the given files of
    requirements/, in file order; the specifiers of a name listed twice are
    combined."""
    found = {}
    for name in files:
        path = osp.join(root, 'requirements', name)
        if not osp.exists(path):
            continue
        with open(path) as f:
            for line in f:
                line = line.split('#')[0].strip()
                if not line or line.startswith('-'):
                    continue
                req = Requirement(line)
                if req.marker is not None and not req.marker.evaluate():
                    continue
                key = canonical(req.name)
                text = re.match(r'[A-Za-z0-9._-]+\s*(\[[^\]]*\])?([^;]*)',
                                line).group(2)
                parts = found.setdefault(key, (req.name, []))[1]
                for part in text.replace(' ', '').split(','):
                    if part and part not in parts:
                        parts.append(part)
    return {k: (n + ','.join(p), ','.join(p))
            for k, (n, p) in found.items()}


def canonical(name):
    return re.sub(r'[-_.]+', '-', name).lower()


# ------------------------------------------------------------------ cache
def cache_dir_name(torch_version, cuda_version, ops_cuda):
    """The cache folder of an mmcv wheel: keyed by the torch release, the
    torch build and what the wheel's ops contain.

    ``torch-2.14.1-cu130`` holds wheels with CUDA ops, ``torch-2.14.1-cu130-
    cpuops`` wheels built against a CUDA torch without CUDA ops (no GPU and
    no FORCE_CUDA=1 at build time), ``torch-2.13.0-cpu`` wheels for a CPU
    torch.
    """
    build = torch_build(cuda_version)
    name = f'torch-{base_version(torch_version)}-{build}'
    if build != 'cpu' and not ops_cuda:
        name += '-cpuops'
    return name


def legacy_dir_name(torch_version):
    """The folder earlier versions of the installer used: keyed by the torch
    version only (``torch-2.14.1_cu130``), whatever the wheel contained."""
    return 'torch-' + torch_version.replace('+', '_')


def classify_wheel(path):
    """``'cuda'``, ``'cpu'`` or ``'noops'``: what the compiled ops of an mmcv
    wheel were built with (read from the wheel, nothing is imported)."""
    with zipfile.ZipFile(path) as zf:
        exts = [n for n in zf.namelist()
                if re.match(r'mmcv/_ext[^/]*\.(so|pyd)$', n)]
        if not exts:
            return 'noops'
        keep = max(len(m) for m in CUDA_MARKERS)
        with zf.open(exts[0]) as f:
            tail = b''
            while True:
                chunk = f.read(1 << 22)
                if not chunk:
                    return 'cpu'
                data = tail + chunk
                if any(m in data for m in CUDA_MARKERS):
                    return 'cuda'
                tail = data[-keep:]


def wheels_in(folder, mmcv_version):
    if not osp.isdir(folder):
        return []
    return sorted(
        osp.join(folder, n) for n in os.listdir(folder)
        if n.startswith(f'mmcv-{mmcv_version}-') and n.endswith('.whl'))


def find_cached_wheel(cache, facts, need_cuda_ops, mmcv_version,
                      classify=classify_wheel):
    """A cached mmcv wheel usable with the installed torch, or None.

    Looks in the keyed folders first (with CUDA ops before without, the
    CPU-ops folder only where CUDA ops are not needed), then in the legacy
    folder of this torch, classifying its wheels by content. Every wheel's
    content is checked, so a CPU-ops wheel is never taken where CUDA ops
    are needed, whatever folder it lies in.

    Returns:
        tuple | None: (path, ops) with ops ``'cuda'`` or ``'cpu'``.
    """
    tv, cuda = facts['torch'], facts.get('torch_cuda')
    wheels = os.path.join(cache, 'wheels')
    folders = [cache_dir_name(tv, cuda, True)]
    if cuda and not need_cuda_ops:
        folders.append(cache_dir_name(tv, cuda, False))
    folders.append(legacy_dir_name(tv))
    for folder in folders:
        for path in wheels_in(osp.join(wheels, folder), mmcv_version):
            ops = classify(path)
            if ops == 'noops' or (need_cuda_ops and ops != 'cuda'):
                continue
            return path, ops
    return None


def place_wheel(path, cache, facts, classify=classify_wheel):
    """Move a wheel into the cache folder its content calls for (a wheel
    already there stays); an emptied legacy folder is removed. Returns the
    new path."""
    ops = classify(path)
    folder = osp.join(cache, 'wheels', cache_dir_name(
        facts['torch'], facts.get('torch_cuda'), ops == 'cuda'))
    target = osp.join(folder, osp.basename(path))
    if osp.abspath(path) == osp.abspath(target):
        return target
    os.makedirs(folder, exist_ok=True)
    shutil.move(path, target)
    old = osp.dirname(osp.abspath(path))
    if osp.basename(old) == legacy_dir_name(facts['torch']) and \
            not os.listdir(old):
        os.rmdir(old)
    return target


# ------------------------------------------------------------------ probe
PROBE = r'''
import importlib.util, json, os, sys
def out(**kw):
    sys.stdout.write(json.dumps(kw) + "\n"); sys.stdout.flush()
def err(e):
    return (type(e).__name__ + ": " + str(e)).splitlines()[0][:200]
spec = importlib.util.find_spec("mmrep")
out(mmrep_origin=spec.origin if spec else None)
try:
    import torch
    out(torch_import=True, torch_cuda=torch.version.cuda,
        cuda_available=bool(torch.cuda.is_available()))
except Exception as e:
    out(torch_import=False, torch_error=err(e)); sys.exit(0)
if os.environ.get("MMREP_PROBE_TORCHVISION", "1") == "1":
    try:
        import torchvision  # noqa: F401
        out(torchvision_import=True)
    except Exception as e:
        out(torchvision_import=False, torchvision_error=err(e))
def missing(e):  # a Python requirement of mmcv, not mmcv's own module
    name = getattr(e, "name", None) or "mmcv"
    return None if name.startswith("mmcv") else name
try:
    import mmcv  # noqa: F401
    out(mmcv_import=True)
except Exception as e:
    out(mmcv_import=False, mmcv_error=err(e), mmcv_missing_module=missing(e))
    sys.exit(0)
try:
    from mmcv import _ext  # noqa: F401
    from mmcv.ops import nms
    boxes = torch.tensor([[0., 0., 1., 1.], [0., 0., 1., 1.]])
    nms(boxes, torch.tensor([1., .5]), .5)
    from mmcv.ops import get_compiling_cuda_version
    cv = get_compiling_cuda_version()
    out(mmcv_ops=True, mmcv_ops_cuda=None if cv == "not available" else cv)
except Exception as e:
    out(mmcv_ops=False, mmcv_error=err(e), mmcv_missing_module=missing(e))
    sys.exit(0)
if torch.cuda.is_available():
    try:
        nms(boxes.cuda(), torch.tensor([1., .5]).cuda(), .5)
        out(mmcv_cuda_nms=True)
    except Exception as e:
        out(mmcv_cuda_nms=False, mmcv_error=err(e))
'''


def dist_version(name):
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def probe(root, names, check_torchvision=True):
    """The installed facts of the running interpreter's environment.

    Imports run in a child interpreter (from an empty folder, so that the
    checkout is not on its path): a crash there (an ABI mismatch of compiled
    ops) reads as a failed import.
    """
    facts = {'torch': dist_version('torch'),
             'torchvision': dist_version('torchvision'),
             'mmcv': dist_version('mmcv'),
             'setuptools': dist_version('setuptools'),
             'wheel': dist_version('wheel'),
             'versions': {canonical(k): dist_version(k) for k in names},
             'opencv': any(dist_version(d) for d in OPENCV_DISTS)}
    facts['torchvision_requires'] = requirement_of('torchvision', 'torch')
    facts['torch_requires_setuptools'] = requirement_of('torch', 'setuptools')
    facts['mmcv_requires'] = requires_of('mmcv')
    for req in facts['mmcv_requires']:
        name = canonical(Requirement(req).name)
        facts['versions'].setdefault(name, dist_version(name))
    import importlib.util
    facts['pkg_resources'] = importlib.util.find_spec('pkg_resources') \
        is not None
    if facts['torch']:
        env = dict(os.environ, MMREP_PROBE_TORCHVISION='1'
                   if check_torchvision else '0')
        with tempfile.TemporaryDirectory() as tmp:
            proc = subprocess.run([sys.executable, '-c', PROBE], cwd=tmp,
                                  env=env, capture_output=True, text=True)
        for line in proc.stdout.splitlines():
            if line.startswith('{'):
                facts.update(json.loads(line))
        if proc.returncode and not facts.get('mmcv_ops'):
            facts.setdefault('mmcv_error', f'crashed ({proc.returncode})')
    facts['mmrep_editable'] = mmrep_location(root, facts.get('mmrep_origin'))
    return facts


def requirement_of(dist, dependency):
    """The specifier with which ``dist`` declares ``dependency``."""
    for req in requires_of(dist):
        r = Requirement(req)
        if canonical(r.name) == dependency:
            return str(r.specifier)
    return None


def requires_of(dist):
    """The requirements of an installed distribution that apply here
    (extras and other platforms left out)."""
    try:
        reqs = metadata.requires(dist) or []
    except metadata.PackageNotFoundError:
        return []
    return [r for r in reqs if Requirement(r).marker is None or
            Requirement(r).marker.evaluate({'extra': ''})]


def mmrep_location(root, origin=None):
    """Whether mmrep is installed, editable, from this checkout: its
    ``direct_url.json`` names the checkout, or (older installs) the module
    the child interpreter finds (``origin``) lies in it."""
    if dist_version('mmrep') is None:
        return False
    target = osp.realpath(root)
    try:
        info = json.loads(metadata.distribution('mmrep').read_text(
            'direct_url.json') or '{}')
    except (ValueError, OSError):
        info = {}
    url = info.get('url', '')
    if info.get('dir_info', {}).get('editable') and url.startswith(
            'file://') and osp.realpath(url[len('file://'):]) == target:
        return True
    return bool(origin) and osp.realpath(origin).startswith(
        osp.join(target, 'mmrep') + os.sep)


# ---------------------------------------------------------------- decide
class Policy:
    """The version policy ``tools/install.sh`` passes in."""

    def __init__(self, torch_supported='>=2.5', torch_tested=('2.13.0',
                 '2.14.1'), torch_default='2.14.1',
                 torchvision_default='0.29.1', mmcv_build='2.1.0',
                 setuptools_max='81', replace_torch=False,
                 skip_torchvision=False, force_cuda=False,
                 cache='~/.cache/mmrep', root='.', requirements=None,
                 no_deps_requirements=None):
        self.torch_supported = torch_supported
        self.torch_tested = tuple(torch_tested)
        self.torch_default = torch_default
        self.torchvision_default = torchvision_default
        self.mmcv_build = mmcv_build
        self.setuptools_max = setuptools_max
        self.replace_torch = replace_torch
        self.skip_torchvision = skip_torchvision
        self.force_cuda = force_cuda
        self.cache = osp.expanduser(cache)
        self.root = root
        self.requirements = requirements or {}
        self.no_deps_requirements = no_deps_requirements or {}


def decide(facts, policy, find_wheel=find_cached_wheel):
    """What to keep and what to install.

    Args:
        facts (dict): from :func:`probe` (or made up in tests).
        policy (Policy): the version policy.
        find_wheel (callable): looks up a cached mmcv wheel.

    Returns:
        dict: ``lines`` (the keep/install lines), ``refused`` (bool) and the
        actions the shell runs: ``torch`` (keep/install/replace/refuse),
        ``torch_specs``, ``torchvision`` (keep/install/skip),
        ``torchvision_spec``, ``mmcv`` (keep/reuse/build/defer),
        ``mmcv_wheel``, ``mmcv_cuda_ops``, ``setuptools_spec``,
        ``pip_specs``, ``no_deps_specs`` (installed with ``--no-deps``),
        ``mmrep`` (keep/install) and ``constraints``.
    """
    p = policy
    lines = []
    plan = {'refused': False, 'lines': lines, 'constraints': []}
    flag = '--replace-torch (or MMREP_REPLACE_TORCH=1)'
    default = (f'torch=={p.torch_default}',
               f'torchvision=={p.torchvision_default}')

    # torch ---------------------------------------------------------------
    tv = facts.get('torch')
    new_torch = False
    if tv is None:
        plan['torch'] = 'install'
        lines.append(f'install torch {p.torch_default} + torchvision '
                     f'{p.torchvision_default} (no torch installed)')
        new_torch = True
    else:
        why = None
        if not satisfies(base_version(tv), p.torch_supported):
            why = f'outside the supported torch{p.torch_supported}'
        elif not facts.get('torch_import'):
            why = 'does not import ({})'.format(
                facts.get('torch_error', 'unknown error'))
        if why is None:
            plan['torch'] = 'keep'
            tested = 'tested' if base_version(tv) in p.torch_tested else \
                'untested; tested: ' + ', '.join(p.torch_tested)
            lines.append(f'keep torch {base_version(tv)} '
                         f'({torch_build(facts.get("torch_cuda"))}, {tested})')
        elif p.replace_torch:
            plan['torch'] = 'replace'
            lines.append(f'replace torch {tv} ({why}) with torch '
                         f'{p.torch_default} + torchvision '
                         f'{p.torchvision_default}')
            new_torch = True
        else:
            plan['torch'] = 'refuse'
            plan['refused'] = True
            lines.append(f'refuse torch {tv}: {why}; rerun with {flag} to '
                         f'replace it with torch {p.torch_default}')
    plan['torch_specs'] = list(default) if new_torch else []

    # torchvision -----------------------------------------------------------
    plan['torchvision'], plan['torchvision_spec'] = 'keep', ''
    if new_torch:
        plan['torchvision'] = 'keep'  # comes with the torch install
    elif plan['torch'] == 'keep':
        tvv = facts.get('torchvision')
        want = expected_torchvision(tv)
        req = facts.get('torchvision_requires')
        matches = req is None or satisfies(base_version(tv), req)
        if tvv is None and p.skip_torchvision:
            plan['torchvision'] = 'skip'
            lines.append('skip torchvision (--no-torchvision; mmpretrain '
                         'and the torchvision-based tests need it)')
        elif tvv is None:
            plan['torchvision'] = 'install'
            plan['torchvision_spec'] = want
            lines.append(f'install {want} (matches torch {base_version(tv)})')
        elif facts.get('torchvision_import') and matches:
            lines.append(f'keep torchvision {tvv}')
        else:
            problem = 'requires torch{}'.format(req) if not matches else \
                'does not import with torch {} ({})'.format(
                    tv, facts.get('torchvision_error', 'unknown error'))
            if p.skip_torchvision:
                # a torchvision that fails on import breaks mmseg and mmdet
                plan['torchvision'] = 'refuse'
                plan['refused'] = True
                lines.append(f'refuse torchvision {tvv}: {problem}; uninstall '
                             f'it to go on without torchvision, or install '
                             f'the build for torch {tv}')
            elif want and not satisfies(tvv, want.split('torchvision')[1]):
                plan['torchvision'] = 'install'
                plan['torchvision_spec'] = want
                lines.append(f'install {want} (torchvision {tvv} {problem})')
            else:
                plan['torchvision'] = 'refuse'
                plan['refused'] = True
                lines.append(
                    f'refuse torchvision {tvv}: {problem}; install the '
                    f'torchvision build for torch {tv} (MMREP_TORCH_INDEX_URL '
                    f'names an index to take it from), or uninstall it '
                    f'and pass --no-torchvision (MMREP_NO_TORCHVISION=1) '
                    f'to go on without it')

    # mmcv ------------------------------------------------------------------
    mmcv_spec = p.requirements.get('mmcv', ('', '>=2.1,<2.2'))[1]
    plan['mmcv_wheel'], plan['mmcv_cuda_ops'] = '', False
    plan['mmcv_pin'] = f'mmcv=={p.mmcv_build}'
    mv = facts.get('mmcv')
    if plan['torch'] == 'refuse':
        plan['mmcv'] = 'defer'
    elif new_torch:
        plan['mmcv'] = 'defer'
        lines.append(f'install mmcv {p.mmcv_build} with compiled ops after '
                     f'torch (a cached wheel, else built from source)')
    else:
        cuda = facts.get('torch_cuda')
        need_cuda = bool(cuda) and (facts.get('cuda_available') or
                                    p.force_cuda)
        plan['mmcv_cuda_ops'] = need_cuda
        why = None
        if mv is None:
            why = 'not installed'
        elif not satisfies(mv, mmcv_spec):
            why = f'{mv} outside mmcv{mmcv_spec}'
        elif facts.get('mmcv_missing_module'):
            why = 'deps'
        elif not facts.get('mmcv_ops'):
            why = '{} without loadable compiled ops ({})'.format(
                mv, facts.get('mmcv_error', 'unknown error'))
        elif need_cuda and not facts.get('mmcv_ops_cuda'):
            why = f'{mv} built without CUDA ops'
        elif need_cuda and facts.get('cuda_available') and \
                facts.get('mmcv_cuda_nms') is False:
            why = f'{mv} CUDA ops fail ({facts.get("mmcv_error")})'
        if why == 'deps':
            plan['mmcv'], plan['mmcv_pin'] = 'deps', f'mmcv=={mv}'
            lines.append(f'install the requirements of mmcv {mv} (no module '
                         f'{facts["mmcv_missing_module"]})')
        elif why is None:
            plan['mmcv'] = 'keep'
            ops = facts.get('mmcv_ops_cuda')
            lines.append('keep mmcv {} (compiled ops, {})'.format(
                mv, f'CUDA {ops}' if ops else 'CPU only'))
        else:
            found = find_wheel(p.cache, facts, need_cuda, p.mmcv_build)
            kind = 'with CUDA ops' if need_cuda else 'with compiled ops'
            if found:
                plan['mmcv'], plan['mmcv_wheel'] = 'reuse', found[0]
                lines.append(f'install mmcv {p.mmcv_build} ({found[1]} ops) '
                             f'from cached {found[0]} ({why})')
            else:
                plan['mmcv'] = 'build'
                lines.append(
                    f'build mmcv {p.mmcv_build} {kind} against torch '
                    f'{base_version(tv)} ({torch_build(cuda)}) into '
                    f'{osp.join(p.cache, "wheels")} ({why})')

    # setuptools: only for building mmcv ----------------------------------
    plan['setuptools_spec'] = ''
    if plan['mmcv'] == 'build':
        low = facts.get('torch_requires_setuptools') or ''
        want = ','.join(s for s in (low, f'<{p.setuptools_max}') if s)
        st = facts.get('setuptools')
        if not (facts.get('pkg_resources') and satisfies(st, want)):
            plan['setuptools_spec'] = f'setuptools{want}'
            lines.append(f'install setuptools{want} (building mmcv needs '
                         f'pkg_resources; installed: {st})')
        else:
            lines.append(f'keep setuptools {st}')
    elif facts.get('setuptools') and not new_torch:
        lines.append(f'keep setuptools {facts["setuptools"]} (no mmcv build)')

    # the other libraries, from requirements/*.txt --------------------------
    specs = _missing(p.requirements, facts, lines)
    plan['no_deps_specs'] = _missing(p.no_deps_requirements, facts, lines,
                                     ' without its dependencies')
    # mmcv's own runtime requirements, once it is installed
    if plan['mmcv'] == 'keep':
        for req in facts.get('mmcv_requires', []):
            r = Requirement(req)
            name = canonical(r.name)
            if (r.marker is not None and not r.marker.evaluate()) or \
                    name in p.requirements or name in ('torch', 'mmcv'):
                continue
            if name in OPENCV_DISTS:
                ok = facts.get('opencv')
            else:
                ok = satisfies(facts.get('versions', {}).get(name),
                               str(r.specifier) or '>=0')
            if not ok:
                specs.append('opencv-python-headless' if name in
                             OPENCV_DISTS else req)
                lines.append(f'install {specs[-1]} (needed by mmcv)')
    plan['pip_specs'] = specs

    # mmrep itself ------------------------------------------------------------
    if facts.get('mmrep_editable'):
        plan['mmrep'] = 'keep'
        lines.append(f'keep mmrep (editable, {p.root})')
    else:
        plan['mmrep'] = 'install'
        lines.append(f'install mmrep (editable) from {p.root}')

    # pip may not touch what was kept
    if plan['torch'] == 'keep':
        plan['constraints'].append(f'torch=={tv}')
        if facts.get('torchvision') and plan['torchvision'] in ('keep',
                                                                 'skip'):
            plan['constraints'].append(f'torchvision=={facts["torchvision"]}')
    if plan['mmcv'] in ('keep', 'deps'):
        plan['constraints'].append(f'mmcv=={mv}')
    # and the libraries stay inside their ranges, whoever pulls them in
    for key, (line, spec) in p.requirements.items():
        if spec and not any(c.startswith(key + '==')
                            for c in plan['constraints']):
            plan['constraints'].append(line)
    plan['done'] = not plan['refused'] and all(
        plan[k] in ('keep', 'skip') for k in ('torch', 'torchvision', 'mmcv',
                                              'mmrep')) and not specs \
        and not plan['no_deps_specs']
    return plan


def _missing(requirements, facts, lines, how=''):
    """The pip lines of the requirements not satisfied by what is
    installed; appends a keep or install line for each (mmcv is decided
    elsewhere)."""
    specs = []
    for key, (line, spec) in requirements.items():
        if key == 'mmcv':
            continue
        have = facts.get('versions', {}).get(key)
        if have is not None and satisfies(have, spec or '>=0'):
            lines.append(f'keep {key} {have}' +
                         (f' ({key}{spec})' if spec else ''))
        else:
            why = 'not installed' if have is None else \
                f'{have} outside {key}{spec}'
            specs.append(line)
            lines.append(f'install {line}{how} ({why})')
    return specs


# -------------------------------------------------------------------- cli
def shell_vars(plan):
    """The plan as bash assignments (arrays for lists)."""
    out = []
    for key in ('torch', 'torchvision', 'torchvision_spec', 'mmcv',
                'mmcv_wheel', 'mmcv_pin', 'setuptools_spec', 'mmrep'):
        out.append(f'PLAN_{key.upper()}={shlex.quote(str(plan[key]))}')
    out.append(f'PLAN_MMCV_CUDA_OPS={int(plan["mmcv_cuda_ops"])}')
    out.append(f'PLAN_REFUSED={int(plan["refused"])}')
    out.append(f'PLAN_DONE={int(plan["done"])}')
    for key in ('torch_specs', 'pip_specs', 'no_deps_specs'):
        items = ' '.join(shlex.quote(s) for s in plan[key])
        out.append(f'PLAN_{key.upper()}=({items})')
    return '\n'.join(out) + '\n'


def policy_from_args(args):
    return Policy(
        torch_supported=args.torch_supported,
        torch_tested=args.torch_tested.split(),
        torch_default=args.torch_default,
        torchvision_default=args.torchvision_default,
        mmcv_build=args.mmcv_build, setuptools_max=args.setuptools_max,
        replace_torch=args.replace_torch,
        skip_torchvision=args.no_torchvision,
        force_cuda=os.environ.get('FORCE_CUDA') == '1', cache=args.cache,
        root=args.root, requirements=read_requirements(args.root),
        no_deps_requirements=read_requirements(args.root, NO_DEPS_FILES))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest='cmd', required=True)
    plan = sub.add_parser('plan')
    plan.add_argument('--root', required=True)
    plan.add_argument('--cache', required=True)
    plan.add_argument('--torch-supported', required=True)
    plan.add_argument('--torch-tested', required=True)
    plan.add_argument('--torch-default', required=True)
    plan.add_argument('--torchvision-default', required=True)
    plan.add_argument('--mmcv-build', required=True)
    plan.add_argument('--setuptools-max', required=True)
    plan.add_argument('--replace-torch', action='store_true')
    plan.add_argument('--no-torchvision', action='store_true')
    plan.add_argument('--vars-out', help='write shell variables here')
    plan.add_argument('--constraints-out', help='write pip constraints here')
    plan.add_argument('--changes-only', action='store_true',
                      help='print only what is installed or refused')
    plan.add_argument('--facts', help='read facts from this JSON file '
                      'instead of probing (for testing)')
    for name in ('classify-wheel', 'place-wheel'):
        s = sub.add_parser(name)
        s.add_argument('wheel')
        s.add_argument('--cache', default='~/.cache/mmrep')
    args = parser.parse_args(argv)

    if args.cmd == 'classify-wheel':
        print(classify_wheel(args.wheel))
        return 0
    if args.cmd == 'place-wheel':
        facts = probe('.', [], check_torchvision=False)
        if not facts.get('torch_import'):
            print('torch does not import', file=sys.stderr)
            return 1
        print(place_wheel(args.wheel, osp.expanduser(args.cache), facts))
        return 0

    policy = policy_from_args(args)
    if not policy.requirements:
        print(f'[install] no requirements/*.txt under {args.root}',
              file=sys.stderr)
        return 1
    if args.facts:
        with open(args.facts) as f:
            facts = json.load(f)
    else:
        facts = probe(args.root, list(policy.requirements) +
                      list(policy.no_deps_requirements))
    result = decide(facts, policy)
    for line in result['lines']:
        if args.changes_only and line.startswith('keep '):
            continue
        print(f'[install] {line}', flush=True)
    if args.vars_out:
        with open(args.vars_out, 'w') as f:
            f.write(shell_vars(result))
    if args.constraints_out:
        with open(args.constraints_out, 'w') as f:
            f.write(''.join(c + '\n' for c in result['constraints']))
    return 0


if __name__ == '__main__':
    sys.exit(main())
