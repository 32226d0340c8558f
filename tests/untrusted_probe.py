"""Load files with :func:`mmrep.utils.safe_load`, each in a forked child.

Usage: ``python tests/untrusted_probe.py SPEC.json OUT.json``, or
``python tests/untrusted_probe.py fuzz SPEC.json OUT.json`` for the fuzz of
``test_fuzz_readers.py`` (see :func:`fuzz`; each genuine file is fuzzed in
a forked child the same way).

SPEC holds ``jobs`` (each: ``name``, ``path``, ``markers``, ``deepcopy``,
``timeout``, and ``reader``: ``mindspore`` or ``paddle`` to call
``mmrep.checkpoints.readers.read_framework_checkpoint`` with that
``framework`` instead),
``warmups`` (genuine files loaded first, so that lazy imports are done
before the baseline) and ``extensions`` (copyreg extension codes to
register: a loader that resolves EXT opcodes through copyreg reaches
them). This process imports torch and mmrep once; each job runs in a child
forked from it, so that a crash (a signal), a hang (killed after its
timeout) or a memory blow-up belongs to that job alone. OUT gets, per job:

* ``outcome``: ``returned``, ``refused`` (a CheckpointLoadError),
  ``escaped`` (any other exception), ``signal`` or ``timeout``;
* ``error`` (the exception's class), ``unsafe`` (an
  UnsafeCheckpointError), ``message`` (its text, cut at 2000 characters),
  ``newline`` (whether the whole text has one), ``type`` (of what loaded);
* ``growth``: the peak resident set's growth in bytes during the load
  (the peak is reset in the child first), ``cpu_s``, ``wall_s``;
* ``deepcopy``: ``ok`` or the exception that ``copy.deepcopy`` of the
  result, or its ``repr``, raised (where asked); ``markers``: those of the
  job's markers that exist afterwards.

Each child's address space is capped at its size plus 3 GiB, as a guard
for this machine: an allocation past it fails (MemoryError or torch's
RuntimeError), which the result shows.
"""
import copy
import functools
import json
import os
import resource
import select
import signal
import sys
import time

ADDRESS_SPACE_GUARD = 3 * 2**30


def _status(field):
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1]) * 1024
    return None


def _peak():
    value = _status('VmHWM')
    if value is None:
        value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return value


def _reset_peak():
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
    except OSError:
        pass


def _text(error):
    try:
        return str(error)
    except BaseException as e:  # noqa: BLE001  str() itself can fail
        return f'<str() raised {type(e).__name__}>'


def _reader(job):
    from mmrep.utils import safe_load
    if not job.get('reader'):
        return safe_load
    from mmrep.checkpoints.readers import read_framework_checkpoint
    return functools.partial(read_framework_checkpoint,
                             framework=job['reader'])


def _load(job):
    from mmrep.utils import CheckpointLoadError, UnsafeCheckpointError
    read = _reader(job)
    _cap_address_space()
    result = {}
    obj = None
    _reset_peak()
    base = _peak()
    cpu, wall = time.process_time(), time.monotonic()
    try:
        obj = read(job['path'])
        result['outcome'] = 'returned'
    except CheckpointLoadError as e:
        text = _text(e)
        result.update(outcome='refused',
                      unsafe=isinstance(e, UnsafeCheckpointError),
                      error=f'{type(e).__module__}.{type(e).__qualname__}',
                      message=text[:2000], newline='\n' in text)
    except BaseException as e:  # noqa: BLE001  that is what is looked for
        text = _text(e)
        result.update(outcome='escaped',
                      error=f'{type(e).__module__}.{type(e).__qualname__}',
                      message=text[:2000], newline='\n' in text)
    result['cpu_s'] = time.process_time() - cpu
    result['wall_s'] = time.monotonic() - wall
    result['growth'] = _peak() - base
    result['type'] = type(obj).__name__
    if job.get('deepcopy') and result['outcome'] == 'returned':
        try:
            copy.deepcopy(obj)
            repr(obj)
            result['deepcopy'] = 'ok'
        except BaseException as e:  # noqa: BLE001
            result['deepcopy'] = f'{type(e).__name__}: {_text(e)[:300]}'
    result['markers'] = [m for m in job.get('markers', ())
                         if os.path.exists(m)]
    return result


def _run(job, work=None):
    """Run ``work()`` (by default, load ``job``) in a forked child; its
    result, or what became of the child."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read)
        try:
            data = json.dumps(work() if work else _load(job)).encode()
        except BaseException as e:  # noqa: BLE001
            data = json.dumps(dict(outcome='escaped',
                                   error=type(e).__name__,
                                   message=_text(e)[:2000],
                                   newline=False)).encode()
        view = memoryview(data)
        while view:
            view = view[os.write(write, view):]
        os._exit(0)
    os.close(write)
    chunks, start = [], time.monotonic()
    deadline = start + job.get('timeout', 60)
    timed_out = False
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            timed_out = True
            break
        ready, _, _ = select.select([read], [], [], left)
        if ready:
            chunk = os.read(read, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    os.close(read)
    if timed_out:
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    wall = time.monotonic() - start
    if timed_out:
        return dict(outcome='timeout', wall_s=wall)
    if os.WIFSIGNALED(status):
        return dict(outcome='signal', signal=os.WTERMSIG(status),
                    wall_s=wall, markers=[m for m in job.get('markers', ())
                                          if os.path.exists(m)])
    try:
        return json.loads(b''.join(chunks))
    except ValueError:
        return dict(outcome='escaped', error='ProbeError',
                    message=f'child exited {status} without a result',
                    newline=False)


def _cap_address_space():
    size = _status('VmSize')
    if size:
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        limit = size + ADDRESS_SPACE_GUARD
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _fuzz_one(target, progress_path):
    """Mutants of one genuine file through ``safe_load``, in this process;
    ``progress_path`` names the mutant being loaded (so that a crash is
    named)."""
    from mmrep.utils import CheckpointLoadError, safe_load
    import untrusted_corpus
    with open(target['path'], 'rb') as f:
        data = f.read()
    _cap_address_space()
    mutant_path = os.path.join(
        target['workdir'], 'mutant' + os.path.splitext(target['path'])[1])
    outcomes = {'returned': 0, 'refused': 0}
    escaped, multiline, times = [], [], []
    start = time.monotonic()
    progress = os.open(progress_path, os.O_WRONLY | os.O_CREAT, 0o644)
    for label, mutant in untrusted_corpus.mutants(
            data, target['kind'], target['seed'], target['counts']):
        with open(mutant_path, 'wb') as f:
            f.write(mutant)
        os.ftruncate(progress, 0)
        os.pwrite(progress, label.encode(), 0)
        began = time.monotonic()
        try:
            safe_load(mutant_path)
            outcomes['returned'] += 1
        except CheckpointLoadError as e:
            outcomes['refused'] += 1
            text = _text(e)
            if '\n' in text or not text.strip():
                multiline.append((label, type(e).__name__, text[:300]))
        except BaseException as e:  # noqa: BLE001  that is what is looked for
            escaped.append((label, f'{type(e).__module__}.'
                                   f'{type(e).__qualname__}',
                            _text(e)[:300]))
        times.append((time.monotonic() - began, label))
    os.close(progress)
    times.sort(reverse=True)
    return dict(outcome='done', count=len(times), outcomes=outcomes,
                escaped=escaped, multiline=multiline,
                slowest=[(label, t) for t, label in times[:5]],
                wall_s=time.monotonic() - start)


def fuzz(spec_path, out_path):
    """Fuzz each of SPEC's ``targets`` in a forked child of this process.

    A target: ``name``, ``path`` (a genuine file), ``kind`` (``zip``,
    ``legacy``, ``pickle``, ``mindspore``), ``seed``, ``counts`` (see
    ``untrusted_corpus.mutants``), ``workdir``, ``timeout``. OUT, per
    target: ``outcome`` (``done``, ``signal``, ``timeout``), ``count``,
    ``outcomes`` (returned / refused counts), ``escaped`` and ``multiline``
    (label, error, message), ``slowest`` (label, seconds), ``wall_s``;
    for a crash or a hang, ``mutant``: the one being loaded.
    """
    with open(spec_path) as f:
        spec = json.load(f)
    import torch
    torch.set_num_threads(1)
    import mmrep  # noqa: F401
    from mmrep.utils import safe_load
    import untrusted_corpus  # noqa: F401
    results = {}
    for target in spec['targets']:
        safe_load(target['path'])  # lazy imports, before forking
    for target in spec['targets']:
        print(f'fuzz: {target["name"]}', flush=True)
        progress = os.path.join(target['workdir'], 'progress')
        job = dict(name=target['name'], timeout=target.get('timeout', 120))
        result = _run(job, lambda: _fuzz_one(target, progress))
        if result['outcome'] in ('signal', 'timeout'):
            with open(progress) as f:
                result['mutant'] = f.read()
        results[target['name']] = result
        with open(out_path, 'w') as f:
            json.dump(results, f)
    return 0


def main(spec_path, out_path):
    with open(spec_path) as f:
        spec = json.load(f)
    import copyreg

    import torch
    torch.set_num_threads(1)
    import mmrep  # noqa: F401
    from mmrep.utils import safe_load
    for module, name, code in spec.get('extensions', ()):
        copyreg.add_extension(module, name, code)
    for path in spec.get('warmups', ()):
        safe_load(path)
    results = {}
    for job in spec['jobs']:
        print(f'probe: {job["name"]}', flush=True)
        results[job['name']] = _run(job)
        with open(out_path, 'w') as f:  # what is known so far
            json.dump(results, f)
    return 0


if __name__ == '__main__':
    if sys.argv[1] == 'fuzz':
        sys.exit(fuzz(*sys.argv[2:]))
    sys.exit(main(*sys.argv[1:]))
