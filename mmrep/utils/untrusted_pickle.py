"""Untrusted pickles: a scan of every opcode before anything is unpickled,
and checking stand-ins for the few foreign globals a checkpoint may name.

A checkpoint's pickle is read in two steps:

1. :func:`scan_pickle` walks its opcodes without building anything. It
   refuses what no checkpoint holds (the opcodes that create objects by
   name outside the allow-list: ``INST``, ``OBJ``, ``NEWOBJ_EX``, the
   ``EXT`` registry, ``PERSID``; a global outside the reader's names), and
   what would let a small file claim a large amount of memory: more than
   the load's budget (:func:`memory_limit` of the file's size) of objects
   and strings, counting :data:`OBJECT_COST` bytes per opcode and a
   memoised string each time it is used again (each use may be copied); a
   memo index far past the opcodes read (the C unpickler reserves the whole
   table) and an integer wider than 128 bits are taken for corruption.
2. The unpickler (torch's weights-only one, or :mod:`pickle`'s with a
   ``find_class`` that admits only :class:`StandIns`) builds the object,
   handing out for each admitted foreign global a stand-in that checks its
   arguments: numpy arrays get a numeric dtype, a shape that matches their
   bytes and a share of one memory budget; mmengine's ``HistoryBuffer``
   gets its own fields only. :meth:`StandIns.materialize` then replaces the
   stand-ins by the real objects, bounds the nesting depth, refuses
   containers that contain themselves, and checks every torch tensor (a
   plain dense tensor within its storage, and all tensors together within
   the budget: a zero-stride view of a small storage is refused).

The errors are :class:`PickleRefused` (the file reaches for code or for
memory out of proportion to its size; nothing was executed) and
:class:`PickleCorrupt` (a pickle that does not parse, or whose content is
inconsistent);
the readers turn them into :class:`~mmrep.utils.UnsafeCheckpointError` and
:class:`~mmrep.utils.CheckpointLoadError`.
"""
import _compat_pickle
import argparse
import collections
import math
import pickletools

import numpy as np
import torch

#: The fixed part of the memory a checkpoint may claim (see
#: :func:`memory_limit`).
MEMORY_ALLOWANCE = 64 << 20
#: How many times its own size a checkpoint may claim.
MEMORY_FACTOR = 4
#: The deepest nesting of containers a checkpoint may hold.
MAX_DEPTH = 100
#: The widest integer a checkpoint's pickle may hold, in bits.
MAX_INT_BITS = 128
#: The most dimensions of an array or tensor (numpy's own limit).
MAX_DIMS = 64
#: What each opcode of a pickle counts against the memory budget: about
#: what the Python object it may make takes.
OBJECT_COST = 64


def memory_limit(file_size):
    """The bytes a checkpoint of ``file_size`` bytes may make: its strings
    and arrays, and the tensors it holds, each in all.

    Args:
        file_size (int): the file's (or the pickle's uncompressed) size.

    Returns:
        int: ``MEMORY_FACTOR * file_size + MEMORY_ALLOWANCE``.
    """
    return MEMORY_FACTOR * file_size + MEMORY_ALLOWANCE


class PickleRefused(Exception):
    """The pickle reaches for code, or for memory out of proportion to its
    size; nothing was executed.

    Attributes:
        memory (bool): refused for the memory it claims, not for code.
    """

    def __init__(self, message, memory=False):
        super().__init__(message)
        self.memory = memory


class PickleCorrupt(Exception):
    """The pickle is well-formed but its content is inconsistent."""


def _brief(value, depth=2):
    """A short description of an unpickled value, for messages: never the
    whole of a large one."""
    if isinstance(value, (bytes, str)) and len(value) > 24 or \
            isinstance(value, (tuple, list)) and (depth == 0
                                                  or len(value) > 8):
        return f'<{type(value).__name__} of length {len(value)}>'
    if isinstance(value, (tuple, list)):
        inner = ', '.join(_brief(v, depth - 1) for v in value)
        if isinstance(value, list):
            return f'[{inner}]'
        return f'({inner},)' if len(value) == 1 else f'({inner})'
    if isinstance(value, int) and value.bit_length() > 64:
        return f'<int of {value.bit_length()} bits>'
    if isinstance(value, (int, float, bytes, str, type(None))):
        return repr(value)
    if isinstance(value, _Global):
        return value.name
    if isinstance(value, _Dtype):
        return f'dtype({value.dtype.str!r})'
    return f'<{type(value).__name__}>'


def one_line(value, limit=160):
    """``value`` as text on one line, cut to ``limit`` characters."""
    text = ' '.join(str(value).split())
    return text if len(text) <= limit else text[:limit - 3] + '...'


# -- the scan -----------------------------------------------------------------

#: Opcodes that create objects by name and that no checkpoint holds.
_NEVER = frozenset({'INST', 'OBJ', 'NEWOBJ_EX', 'EXT1', 'EXT2', 'EXT4',
                    'PERSID'})
_PUT = frozenset({'PUT', 'BINPUT', 'LONG_BINPUT'})
_GET = frozenset({'GET', 'BINGET', 'LONG_BINGET'})
_OTHER = object()  # a value the scan does not follow
_MARK = object()


def global_name(module, name):
    """``module.name`` as Python 3 spells it (pickles of Python 2 name
    ``__builtin__`` and others), as the unpicklers resolve it."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        module, name = _compat_pickle.NAME_MAPPING[(module, name)]
    elif module in _compat_pickle.IMPORT_MAPPING:
        module = _compat_pickle.IMPORT_MAPPING[module]
    return f'{module}.{name}'


def scan_pickle(file, names, budget, persistent_ids=False,
                new_objects=False, stack_globals=True):
    """Walk one pickle's opcodes (up to its ``STOP``) and refuse what no
    checkpoint holds, building nothing.

    Args:
        file (io.BufferedIOBase): positioned at the pickle; left after its
            ``STOP``.
        names (Container[str]): the globals the pickle may name
            (``module.name``, Python 3 spelling).
        budget (StandIns): the load's memory budget: each opcode costs
            :data:`OBJECT_COST` bytes (what one Python object may take) and
            each string pushed its length, a memoised string each time it
            is fetched again.
        persistent_ids (bool): whether ``BINPERSID`` (torch's storages) may
            appear.
        new_objects (bool): whether ``NEWOBJ`` may appear (applied by the
            unpickler to admitted classes only).
        stack_globals (bool): whether ``STACK_GLOBAL`` may appear (torch's
            weights-only unpickler, which knows no such opcode, has it
            refused here as what it is: a global named from the stack).

    Returns:
        set[str]: the globals the pickle names.

    Raises:
        PickleRefused: an opcode or global outside what is admitted, or
            more than the budget.
        PickleCorrupt: the opcodes do not parse or do not fit together, a
            memo index far past the opcodes read (which the C unpickler
            would reserve a table for), an integer wider than
            :data:`MAX_INT_BITS`, a frame longer than the budget.
    """
    stack, memo, named = [], {}, set()
    count = 0
    try:
        for op, arg, pos in pickletools.genops(file):
            count += 1
            name = op.name
            if name in _NEVER or (name == 'BINPERSID' and not persistent_ids) \
                    or (name == 'NEWOBJ' and not new_objects) \
                    or (name == 'STACK_GLOBAL' and not stack_globals):
                raise PickleRefused(f'uses the opcode {name} at byte {pos}, '
                                    f'which creates objects by name')
            if name == 'FRAME' and arg > budget.limit:
                raise PickleCorrupt(f'announces a frame of {arg} bytes')
            if isinstance(arg, int) and arg.bit_length() > MAX_INT_BITS:
                raise PickleCorrupt(f'holds an integer of '
                                    f'{arg.bit_length()} bits at byte {pos}')
            if name in _PUT:
                if arg > count:
                    raise PickleCorrupt(f'stores memo entry {arg} at byte '
                                        f'{pos}, after {count} opcodes')
                memo[arg] = stack[-1] if stack else _OTHER
                continue
            if name == 'MEMOIZE':
                memo[len(memo)] = stack[-1] if stack else _OTHER
                continue
            if name in ('GLOBAL', 'STACK_GLOBAL'):
                if name == 'GLOBAL':
                    module, _, attr = arg.partition(' ')
                else:
                    module, attr = stack[-2:] if len(stack) >= 2 else (0, 0)
                    if not (isinstance(module, str)
                            and isinstance(attr, str)):
                        raise PickleRefused(f'names a computed global at '
                                            f'byte {pos}')
                full = global_name(module, attr)
                if full not in names:
                    raise PickleRefused(f'calls {one_line(full)}')
                named.add(full)
            value = _OTHER
            if name in _GET:
                if arg not in memo:
                    raise PickleCorrupt(f'fetches memo entry {arg} at byte '
                                        f'{pos}, which was never stored')
                value = memo[arg]
            elif isinstance(arg, (str, bytes, bytearray)):
                value = arg
            budget.spend(OBJECT_COST + (len(value) if isinstance(
                value, (str, bytes, bytearray)) else 0), 'objects and strings')
            _shadow(stack, op, value)
    except (PickleRefused, PickleCorrupt):
        raise
    except Exception as e:  # noqa: BLE001  genops fails in many ways
        raise PickleCorrupt(one_line(e)) from None
    return named


def _shadow(stack, op, value):
    """Apply one opcode to the shadow stack: the strings it pushes (for
    ``STACK_GLOBAL`` and the string budget), anything else as a marker."""
    before = list(op.stack_before)
    if op.name == 'MARK':
        stack.append(_MARK)
        return
    if pickletools.markobject in before:
        while stack and stack[-1] is not _MARK:
            stack.pop()
        if not stack:
            raise PickleCorrupt(f'{op.name} without a MARK')
        stack.pop()
        del before[before.index(pickletools.markobject):]
    if len(stack) < len(before):
        raise PickleCorrupt(f'{op.name} on a stack of {len(stack)}')
    if before:
        del stack[-len(before):]
    stack.extend([value] if len(op.stack_after) == 1 else
                 [_OTHER] * len(op.stack_after))


# -- stand-ins ----------------------------------------------------------------

# dtype names numpy pickles for numeric arrays (no objects, strings,
# records or datetimes).
_NUMERIC = frozenset('b1 i1 i2 i4 i8 u1 u2 u4 u8 f2 f4 f8 c8 c16'.split())
# The state numpy pickles for a numeric dtype, but for its byte order.
_DTYPE_STATE = (None, None, None, -1, -1, 0)
#: The fields of mmengine's ``HistoryBuffer`` a checkpoint may set.
_HISTORY_FIELDS = frozenset({'max_length', '_log_history', '_count_history',
                             'statistics_methods'})


class _Global:
    """What an unpickler hands out for an admitted global: a callable that
    checks its arguments, and refuses to have its state set."""
    __slots__ = ('name', '_call')

    def __init__(self, name, call):
        self.name = name
        self._call = call

    def __call__(self, *args):
        return self._call(self.name, *args)

    def __setstate__(self, state):
        raise PickleRefused(f'sets the state of {self.name}')


class _Dtype:
    """A numeric numpy dtype that a pickle built (``dtype(name, ...)``,
    then its state)."""
    __slots__ = ('dtype', 'built')

    def __init__(self, dtype):
        self.dtype, self.built = dtype, False

    def __setstate__(self, state):
        if getattr(self, 'built', True) or not (
                isinstance(state, tuple) and len(state) == 8
                and state[0] == 3 and state[1] in tuple('<>|=')
                and state[2:] == _DTYPE_STATE):
            raise PickleRefused(f'gives a numpy dtype the state '
                                f'{one_line(_brief(state))}')
        if state[1] in '<>':
            self.dtype = self.dtype.newbyteorder(state[1])
        self.built = True


class _Array:
    """A numpy array that a pickle built (``_reconstruct(...)``, then its
    state), checked before numpy sees anything."""
    __slots__ = ('array', 'stand_ins')

    def __init__(self, stand_ins, array=None):
        self.stand_ins, self.array = stand_ins, array

    def __setstate__(self, state):
        if getattr(self, 'stand_ins', None) is None or \
                self.array is not None or not isinstance(state, tuple) \
                or len(state) not in (4, 5) \
                or (len(state) == 5 and state[0] != 1):
            raise PickleRefused(f'gives a numpy array the state '
                                f'{one_line(_brief(state))}')
        shape, dtype, fortran, raw = state[-4:]
        if isinstance(raw, str):  # a Python 2 pickle, read as latin-1
            raw = raw.encode('latin-1')
        if not (isinstance(shape, tuple) and len(shape) <= MAX_DIMS
                and all(type(d) is int and 0 <= d < 1 << 62 for d in shape)
                and isinstance(dtype, _Dtype) and dtype.built
                and fortran in (True, False) and isinstance(raw, bytes)):
            raise PickleRefused(f'gives a numpy array the state '
                                f'{one_line(_brief(state))}')
        size = math.prod(shape) * dtype.dtype.itemsize
        if size != len(raw):
            raise PickleCorrupt(f'an array of shape {list(shape)} holds '
                                f'{len(raw)} bytes, not {size}')
        self.array = np.frombuffer(raw, dtype.dtype).reshape(
            shape, order='F' if fortran else 'C')


class _StateOnly:
    """An object a checkpoint builds from its state alone (``NEWOBJ``,
    then ``BUILD``): the state, checked, is kept for
    :meth:`StandIns.materialize`; calling the class is refused."""
    __slots__ = ('state', )
    name = ''

    def __init__(self, *args):
        raise PickleRefused(f'calls {self.name}, which a checkpoint only '
                            f'builds from its state')

    def __setstate__(self, state):
        if hasattr(self, 'state') or not isinstance(state, dict) or \
                not self.fits(state):
            raise PickleRefused(f'gives a {self.name} the state '
                                f'{one_line(_brief(state))}')
        self.state = state


class _HistoryBuffer(_StateOnly):
    """mmengine's ``HistoryBuffer``: its own fields only."""
    __slots__ = ()
    name = 'HistoryBuffer'

    @staticmethod
    def fits(state):
        return set(state) <= _HISTORY_FIELDS


class _Namespace(_StateOnly):
    """An ``argparse.Namespace``: plain attribute names (no dunders, which
    a second ``BUILD`` would call)."""
    __slots__ = ()
    name = 'argparse.Namespace'

    @staticmethod
    def fits(state):
        return all(isinstance(k, str) and k.isidentifier()
                   and not k.startswith('__') for k in state)


class _OrderedDict(collections.OrderedDict):
    """An ``OrderedDict`` whose attributes a pickle cannot replace."""

    def __setstate__(self, state):
        raise PickleRefused('sets attributes of an OrderedDict')


def _odd(name, args):
    return PickleRefused(f'calls {name} with arguments no checkpoint '
                         f'pickles ({one_line(_brief(args))})')


class StandIns:
    """The stand-ins of one load, and the one memory budget of the load.

    The budget counts the objects and strings of the pickle
    (:func:`scan_pickle`), the bytes its numpy arrays are copied into, and
    the bytes of the tensors the loaded object holds.

    Args:
        limit (int): the budget in bytes (:func:`memory_limit` of the
            file's size).
    """

    def __init__(self, limit):
        self.limit = limit
        self.spent = 0
        ndarray = _Global('numpy.ndarray', self._ndarray)
        self._ndarray_global = ndarray
        self.globals = {'numpy.ndarray': ndarray,
                        'numpy.dtype': _Global('numpy.dtype', self._dtype),
                        '_codecs.encode': _Global('_codecs.encode',
                                                  self._encode),
                        'builtins.bytes': _Global('builtins.bytes',
                                                  self._bytes)}
        for module in ('numpy._core.multiarray', 'numpy.core.multiarray'):
            for attr, call in (('_reconstruct', self._reconstruct),
                               ('scalar', self._scalar)):
                name = f'{module}.{attr}'
                self.globals[name] = _Global(name, call)

    def spend(self, size, what):
        """Count ``size`` bytes of ``what`` against the one budget of the
        load.

        Raises:
            PickleRefused: past :attr:`limit` in all.
        """
        self.spent += size
        if self.spent > self.limit:
            raise PickleRefused(f'makes more than {self.limit} bytes (of '
                                f'{what}, with what came before)',
                                memory=True)

    # the numpy globals, each called by the unpickler with the pickle's
    # arguments

    def _reconstruct(self, name, *args):
        if len(args) != 3 or args[0] is not self._ndarray_global \
                or args[1] != (0, ) or args[2] not in (b'b', 'b'):
            raise _odd(name, args)
        return _Array(self)

    @staticmethod
    def _ndarray(name, *args):
        raise _odd(name, args)

    @staticmethod
    def _dtype(name, *args):
        if len(args) != 3 or not isinstance(args[0], str) \
                or args[0] not in _NUMERIC or args[1] not in (True, False) \
                or args[2] not in (True, False):
            raise _odd(name, args)
        return _Dtype(np.dtype(args[0]))

    def _scalar(self, name, *args):
        if len(args) != 2 or not isinstance(args[0], _Dtype) \
                or not args[0].built or not isinstance(args[1], (bytes, str)):
            raise _odd(name, args)
        raw = args[1].encode('latin-1') if isinstance(args[1], str) \
            else args[1]
        if len(raw) != args[0].dtype.itemsize:
            raise PickleCorrupt(f'a {args[0].dtype} scalar of {len(raw)} '
                                f'bytes')
        return _Array(self, np.frombuffer(raw, args[0].dtype).reshape(()))

    def _encode(self, name, *args):
        if len(args) != 2 or not isinstance(args[0], str) \
                or args[1] not in ('latin1', 'latin-1'):
            raise _odd(name, args)
        self.spend(len(args[0]), 'encoded bytes')
        return args[0].encode('latin-1')

    @staticmethod
    def _bytes(name, *args):
        if args:
            raise _odd(name, args)
        return b''

    # what the unpicklers admit

    def pickle_globals(self, names):
        """The stand-ins for ``names`` (those :mod:`pickle`'s unpickler
        hands out through ``find_class``), plus ``collections.OrderedDict``
        and mmengine's ``HistoryBuffer`` and its ``getattr`` where named.

        Args:
            names (Iterable[str]): admitted globals (``module.name``).

        Returns:
            dict[str, object]: each name's stand-in.
        """
        found = {}
        for name in names:
            if name in self.globals:
                found[name] = self.globals[name]
            elif name == 'collections.OrderedDict':
                found[name] = _Global(name, self._ordered_dict)
        return found

    @staticmethod
    def _ordered_dict(name, *args):
        if args:
            raise _odd(name, args)
        return _OrderedDict()

    def torch_globals(self):
        """The entries for torch's weights-only allow-list
        (``torch.serialization.safe_globals``) of one load: numpy's array,
        dtype and scalar globals, mmengine's ``HistoryBuffer`` and the one
        ``getattr`` its pickles make, ``argparse.Namespace``, and the
        stand-in types (so that torch applies their ``__setstate__``).

        Returns:
            list: ``(object, name)`` pairs and types.
        """
        entries = [(value, name) for name, value in self.globals.items()
                   if name != '_codecs.encode']  # torch admits its own
        entries += [(_HistoryBuffer, HISTORY_BUFFER),
                    (self._history_getattr, 'builtins.getattr'),
                    (_Namespace, 'argparse.Namespace'), _Array, _Dtype]
        return entries

    @staticmethod
    def _history_getattr(obj, name):
        """The one ``getattr`` mmengine's checkpoints make: a
        ``HistoryBuffer`` pickles its statistics methods (``min``, ``max``,
        ``mean``, ``current``, and registered ones) as
        ``getattr(HistoryBuffer, name)``. The name alone is kept."""
        from mmengine.logging import HistoryBuffer
        methods = {'min', 'max', 'mean', 'current'}
        methods.update(HistoryBuffer._statistics_methods)  # registered
        if obj is _HistoryBuffer and isinstance(name, str) \
                and name in methods:
            return name
        raise PickleRefused(f'calls getattr({one_line(_brief(obj))}, '
                            f'{one_line(_brief(name))}): only a '
                            f'HistoryBuffer statistics method may be looked '
                            f'up')

    # after the unpickler

    def materialize(self, obj):
        """Replace the stand-ins in ``obj`` by real objects and check what
        it holds.

        numpy arrays become writable copies (scalars numpy scalars),
        ``OrderedDict`` stand-ins plain ``OrderedDict``, ``HistoryBuffer``
        stand-ins mmengine's ``HistoryBuffer`` (built by its constructor
        from their checked fields). Every torch tensor must be a plain
        dense tensor within its storage, and all of them together within
        :attr:`limit` bytes.

        Args:
            obj (object): what the unpickler returned.

        Returns:
            object: the checkpoint's content.

        Raises:
            PickleRefused: a tensor view larger than its storage, or more
                tensor bytes than :attr:`limit` in all (e.g. zero-stride
                views of a small storage).
            PickleCorrupt: nesting deeper than :data:`MAX_DEPTH`, a
                container that contains itself, an array never given its
                data, a tensor of an unusual layout or device, a
                ``HistoryBuffer`` with fields of the wrong types.
        """
        return self._real(obj, 0, set(), {})

    def _real(self, obj, depth, path, done):
        """``obj`` with its stand-ins replaced; ``path`` holds the ids of
        the containers being materialized (a cycle), ``done`` each
        container already materialized (shared ones are visited once)."""
        if id(obj) in done:
            return done[id(obj)][1]
        result = self._real_once(obj, depth, path, done)
        if isinstance(obj, (dict, list, tuple, set, frozenset,
                            _Namespace, _Array, _HistoryBuffer)):
            done[id(obj)] = (obj, result)  # obj kept alive: its id stays
        return result

    def _real_once(self, obj, depth, path, done):
        if isinstance(obj, (str, bytes, int, float, complex, type(None))):
            return obj
        if depth > MAX_DEPTH:
            raise PickleCorrupt(f'containers nested more than {MAX_DEPTH} '
                                f'deep')
        if torch.is_tensor(obj):
            self._check_tensor(obj)
            return obj
        if isinstance(obj, _Array):
            if obj.array is None:
                raise PickleCorrupt('a numpy array never given its data')
            self.spend(obj.array.nbytes, 'numpy arrays')  # the copy
            return obj.array[()].copy() if obj.array.ndim == 0 \
                else obj.array.copy()
        if isinstance(obj, _Dtype):
            return obj.dtype
        if isinstance(obj, _HistoryBuffer):
            return self._history_buffer(obj, depth, path, done)
        if id(obj) in path:
            raise PickleCorrupt(f'a {type(obj).__name__} that contains '
                                f'itself')
        path = path | {id(obj)}
        if isinstance(obj, dict):
            items = [(self._real(k, depth + 1, path, done),
                      self._real(v, depth + 1, path, done))
                     for k, v in obj.items()]
            if isinstance(obj, _OrderedDict):
                return collections.OrderedDict(items)
            obj.clear()
            obj.update(items)
            return obj
        if isinstance(obj, list):
            obj[:] = [self._real(v, depth + 1, path, done) for v in obj]
            return obj
        if isinstance(obj, (tuple, set, frozenset)):
            items = [self._real(v, depth + 1, path, done) for v in obj]
            if all(a is b for a, b in zip(items, obj)):
                return obj
            if isinstance(obj, tuple) and type(obj) is tuple:
                return tuple(items)
            raise PickleCorrupt(f'a numpy array inside a '
                                f'{type(obj).__name__}')
        if isinstance(obj, _Namespace):
            return argparse.Namespace(**{
                k: self._real(v, depth + 1, path, done)
                for k, v in getattr(obj, 'state', {}).items()})
        return obj  # torch dtypes, devices, sizes, layouts

    def _history_buffer(self, obj, depth, path, done):
        from mmengine.logging import HistoryBuffer
        if not hasattr(obj, 'state'):
            raise PickleCorrupt('a HistoryBuffer never given its state')
        state = {k: self._real(v, depth + 1, path, done)
                 for k, v in obj.state.items() if k != 'statistics_methods'}
        logs = state.get('_log_history', np.zeros(0))
        counts = state.get('_count_history', np.zeros(0))
        length = state.get('max_length', 1000000)
        if not (isinstance(logs, np.ndarray) and logs.ndim == 1
                and isinstance(counts, np.ndarray) and counts.ndim == 1
                and len(logs) == len(counts) and type(length) is int
                and 0 < length and len(logs) <= length):
            raise PickleCorrupt('a HistoryBuffer whose fields are no log '
                                'history')
        return HistoryBuffer(logs, counts, length)

    def _check_tensor(self, tensor):
        if type(tensor) not in (torch.Tensor, torch.nn.Parameter) or \
                tensor.layout != torch.strided or tensor.is_quantized or \
                tensor.is_meta or tensor.is_nested:
            raise PickleCorrupt(f'a tensor of type {type(tensor).__name__} '
                                f'and layout {tensor.layout}, which no '
                                f'checkpoint of these models holds')
        if tensor.dim() > MAX_DIMS:
            raise PickleCorrupt(f'a tensor of {tensor.dim()} dimensions')
        size = tensor.numel() * tensor.element_size()
        if size > tensor.untyped_storage().nbytes():
            raise PickleRefused(f'holds a tensor view of {size} bytes over '
                                f'a storage of '
                                f'{tensor.untyped_storage().nbytes()} bytes '
                                f'(repeated or zero strides)', memory=True)
        self.spend(size, 'tensors')


#: The name mmengine's ``HistoryBuffer`` pickles under.
HISTORY_BUFFER = 'mmengine.logging.history_buffer.HistoryBuffer'
