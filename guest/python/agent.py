#!/usr/bin/env python3
"""fnvm Python guest agent: runs one function's handler and answers the host (see guest/PROTOCOL.md).

Transport: length-prefixed JSON frames over stdin/stdout (local-process mode) or, with `--port NAME`,
over the virtio-serial port of that name (in the VM). Only the host sends requests; every request gets
exactly one reply, and replies may come back in any order.

Threads: the main thread reads and dispatches frames; ping/stats are answered inline, loads run one at a
time on a loader thread, sync handlers each get a thread, async handlers share one asyncio loop thread.
Standard library only (Debian 12's python3.11); heavy modules are imported on first use to start fast.
"""
import contextvars
import json
import math
import re
import os
import sys
import threading
import time

AGENT_VERSION = 2
MAX_CLOCK_STEP_MS = 1e12
MAX_FRAME_BYTES = 16 * 1024 * 1024
MAX_RESPONSE_BYTES = 6 * 1024 * 1024  # PROTOCOL.md: the serialised response, UTF-8; exactly 6 MiB is allowed
LOG_LIMIT_BYTES = 1024 * 1024
TRUNCATED_LINE = '[logs truncated]'
MODULE_NAME = 'function'
MODULE_FILE = 'function.py'
AGENT_FILE = os.path.abspath(__file__)


def error_info(type_name, message, stack=''):
    return {'type': type_name, 'message': message, 'stack': stack}


def exception_info(exc):
    """{type, message, stack} for an exception, its traceback starting at the user's code."""
    import traceback

    tb = exc.__traceback__
    while tb is not None and os.path.abspath(tb.tb_frame.f_code.co_filename) == AGENT_FILE:
        tb = tb.tb_next  # the agent's own frames only add noise
    stack = ''.join(traceback.format_exception(type(exc), exc, tb))
    return error_info(type(exc).__name__, str(exc), stack.rstrip('\n'))



LEADING_ID = re.compile(rb'^\{"id":(\d{1,15})[,}]')


def leading_id(payload):
    """The host writes `id` first (PROTOCOL.md): a frame too deep or broken to parse can still be answered."""
    match = LEADING_ID.match(bytes(payload[:32]))
    return int(match.group(1)) if match else None

class RequestError(Exception):
    """A request that fails as a whole: the reply is `ok: false` with this type and message."""

    def __init__(self, type_name, message, stack=''):
        super().__init__(message)
        self.info = error_info(type_name, message, stack)


# ---------------------------------------------------------------------------------------------------------
# Log capture: print / sys.stdout / sys.stderr go to the buffer of whichever invocation (or load) is
# running in the current thread or asyncio task; a ContextVar keeps overlapping invocations apart.

current_logs = contextvars.ContextVar('fnvm_logs', default=None)


class LogBuffer:
    """Text written by one invocation, capped at LOG_LIMIT_BYTES of UTF-8."""

    def __init__(self):
        self._parts = []
        self._size = 0
        self._truncated = False
        self._closed = False
        self._lock = threading.Lock()  # the handler may share its context with tasks it spawns

    def write(self, text):
        """Keeps text; False once the invocation is over (so the caller sends it elsewhere)."""
        with self._lock:
            if self._closed:
                return False
            if self._truncated:
                return True
            data = text.encode('utf-8', 'surrogatepass')
            room = LOG_LIMIT_BYTES - self._size
            if len(data) > room:
                text = data[:room].decode('utf-8', 'ignore')  # drop a split character at the cut
                self._truncated = True
            self._parts.append(text)
            self._size += min(len(data), room)
            return True

    def close(self):
        """Ends capture and returns the lines (without their newlines)."""
        with self._lock:
            self._closed = True
            text = ''.join(self._parts)
            self._parts = []
        lines = text.split('\n') if text else []
        if lines and lines[-1] == '':
            lines.pop()  # text ending in a newline has no extra empty line
        if self._truncated:
            lines.append(TRUNCATED_LINE)
        return lines


class RoutedStream:
    """Stands in for sys.stdout / sys.stderr: text goes to the current LogBuffer, else to the real stderr."""

    encoding = 'utf-8'
    errors = 'replace'

    def __init__(self, name, fallback):
        self.name = name
        self._fallback = fallback

    def write(self, text):
        if not isinstance(text, str):
            raise TypeError(f'write() argument must be str, not {type(text).__name__}')
        buffer = current_logs.get()
        if buffer is None or not buffer.write(text):
            self._fallback.write(text)
            self._fallback.flush()
        return len(text)

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def flush(self):
        pass

    def isatty(self):
        return False

    def writable(self):
        return True

    def readable(self):
        return False

    def fileno(self):
        import io

        raise io.UnsupportedOperation('captured stream has no file descriptor')

    @property
    def closed(self):
        return False


# ---------------------------------------------------------------------------------------------------------
# Transport: raw file descriptors, whole frames written under one lock so they never interleave.

class Transport:
    def __init__(self, read_fd, write_fd, reconnects):
        self.read_fd = read_fd
        self.write_fd = write_fd
        # A virtio-serial read returns 0 while the host side is not connected (not yet, or across a
        # snapshot restore): wait for it instead of exiting as we do when stdin closes.
        self.reconnects = reconnects
        self._write_lock = threading.Lock()

    @classmethod
    def stdio(cls):
        # Private copies of fds 0/1 for the protocol; fd 0 becomes /dev/null and fd 1 a copy of stderr,
        # so handlers (or their subprocesses) printing at the fd level cannot corrupt or eat frames.
        read_fd, write_fd = os.dup(0), os.dup(1)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        os.dup2(2, 1)
        return cls(read_fd, write_fd, reconnects=False)

    @classmethod
    def virtio_port(cls, name, wait_s=10.0, every_s=0.02):
        deadline = time.monotonic() + wait_s
        while True:
            path = find_virtio_port(name)
            if path is not None:
                try:
                    fd = os.open(path, os.O_RDWR)
                    return cls(fd, fd, reconnects=True)
                except FileNotFoundError:
                    pass  # sysfs entry seen before its /dev node
            if time.monotonic() >= deadline:
                sys.stderr.write(f'fnvm agent: virtio-serial port {name!r} not found after {wait_s:g} s\n')
                sys.stderr.flush()
                sys.exit(1)
            time.sleep(every_s)

    def read(self):
        """Next chunk; b'' when the host has gone for good, None while a virtio host end is unconnected."""
        chunk = os.read(self.read_fd, 1 << 20)
        if chunk or not self.reconnects:
            return chunk
        time.sleep(0.005)
        return None

    def write_frame(self, payload):
        frame = len(payload).to_bytes(4, 'big') + payload
        view = memoryview(frame)
        with self._write_lock:
            while view:
                written = os.write(self.write_fd, view)
                view = view[written:]


def find_virtio_port(name):
    """/dev path of the virtio-serial port named `name` (its number varies: vport0p1, vport1p1...)."""
    base = '/sys/class/virtio-ports'
    try:
        entries = os.listdir(base)
    except FileNotFoundError:
        return None
    for entry in entries:
        try:
            with open(os.path.join(base, entry, 'name')) as f:
                if f.read().strip() == name:
                    return '/dev/' + entry
        except OSError:
            continue
    return None


class FrameReader:
    """Splits the byte stream into frame payloads."""

    def __init__(self):
        self._buffer = bytearray()

    def reset(self):
        self._buffer.clear()

    def push(self, chunk):
        self._buffer += chunk
        frames = []
        while len(self._buffer) >= 4:
            length = int.from_bytes(self._buffer[:4], 'big')
            if length > MAX_FRAME_BYTES:
                raise ValueError(f'incoming frame of {length} bytes exceeds {MAX_FRAME_BYTES}')
            if len(self._buffer) < 4 + length:
                break
            with memoryview(self._buffer) as view:  # one copy of a multi-MB payload, not two
                frames.append(bytes(view[4:4 + length]))
            del self._buffer[:4 + length]
        return frames


def sized_response(value, ascii_json):
    """The response JSON to send and its UTF-8 size as the host measures it (non-ASCII unescaped, as
    JSON.stringify writes it). A long escaped text is re-encoded unescaped, which is smaller: 6 MiB of
    non-ASCII text escapes to up to 36 MB, more than a frame holds."""
    if len(ascii_json) <= MAX_RESPONSE_BYTES:
        return ascii_json, len(ascii_json)  # escaping only ever makes the text longer
    text = json.dumps(value, allow_nan=False, ensure_ascii=False, separators=(',', ':'))
    size = len(text.encode('utf-8', 'surrogatepass'))
    try:
        text.encode('utf-8')
    except UnicodeEncodeError:
        return ascii_json, size  # a lone surrogate can only travel escaped
    return text, size


def encode_json(value):
    # allow_nan=False: NaN/Infinity are not JSON and would break the host's parser.
    return json.dumps(value, allow_nan=False, separators=(',', ':'))


# ---------------------------------------------------------------------------------------------------------
# Loading code

class Loaded:
    """One loaded version: everything an invocation needs, built fully before it is published."""

    __slots__ = ('handler', 'version', 'is_async', 'arity', 'module', 'env_keys', 'source')

    def __init__(self, handler, version, is_async, arity, module, env_keys, source):
        self.handler = handler
        self.version = version
        self.is_async = is_async
        self.arity = arity  # how many of (event, context) the handler takes
        self.module = module
        self.env_keys = env_keys  # what this load set in os.environ, undone by the next load
        self.source = source


def handler_name(spec):
    """`name` or Lambda-style `file.name` -> `name`."""
    name = spec.rsplit('.', 1)[-1]
    if not name.isidentifier():
        raise RequestError('HandlerNotFound', f'handler {spec!r} is not a valid Python name')
    return name


def handler_arity(fn):
    """2 when the handler can take (event, context), 1 for (event), 0 for ()."""
    import inspect

    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return 1
    for arity in (2, 1, 0):
        try:
            signature.bind(*([None] * arity))
            return arity
        except TypeError:
            continue
    return 1


def is_async_function(fn):
    import inspect

    target = fn if inspect.isfunction(fn) or inspect.ismethod(fn) else getattr(fn, '__call__', fn)
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(target)


class Environment:
    """Applies each load's env to os.environ, undoing only what the previous load set."""

    def __init__(self):
        self._base = dict(os.environ)  # the agent's own environment, restored when a key stops being set

    def apply(self, env, previous_keys):
        """Sets env; returns a function that undoes this call (for a failed load)."""
        touched = set(env) | set(previous_keys)
        before = {key: os.environ.get(key) for key in touched}

        def undo():
            for key, value in before.items():
                self._set(key, value)

        try:
            for key in set(previous_keys) - set(env):
                self._set(key, self._base.get(key))
            for key, value in env.items():
                os.environ[key] = value
        except BaseException:
            undo()
            raise
        return undo

    @staticmethod
    def _set(key, value):
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def compile_module(code):
    try:
        return compile(code, MODULE_FILE, 'exec')
    except (SyntaxError, ValueError) as exc:  # ValueError: null bytes in the source (3.11)
        import traceback

        stack = ''.join(traceback.format_exception_only(type(exc), exc)).rstrip('\n')
        raise RequestError('SyntaxError', str(exc), stack) from None


def new_module():
    import types
    from datetime import datetime

    module = types.ModuleType(MODULE_NAME)
    # functions-api.md's example calls datetime.now() without importing it.
    module.__dict__.update(datetime=datetime, __file__=MODULE_FILE)
    return module


def remember_source(code):
    """Lets tracebacks show the lines of function.py although no such file exists."""
    import linecache

    linecache.cache[MODULE_FILE] = (len(code), None, code.splitlines(True), MODULE_FILE)


# ---------------------------------------------------------------------------------------------------------
# Packages: the code is a directory tree on the task disk (a read-only virtio-blk device, found by its serial),
# mounted at /var/task at the first load that asks for it. The handler is `path/to/file.name` or
# `path.to.file.name`; /var/task comes first on sys.path, so vendored packages at its root import.

TASK_ROOT = '/var/task'
TASK_SERIAL = 'fnvm-task'  # src/vm/qemu-args.ts
BLKFLSBUF = 0x1261  # _IO(0x12, 97), linux/fs.h
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOATIME = 1, 2, 4, 1024


def task_device():
    for name in os.listdir('/sys/block'):
        try:
            with open(f'/sys/block/{name}/serial') as serial:
                if serial.read().strip() == TASK_SERIAL:
                    return f'/dev/{name}'
        except OSError:
            continue  # no serial (the root disk has none): not the task disk
    raise OSError(f'no block device with serial {TASK_SERIAL}')


# Found when the agent starts, so a base snapshot already knows it (sysfs reads are slow under TCG).
task_device_path = None


def mount_task():
    """Drops the device's cached blocks (the kernel read the placeholder behind it at boot), then mounts it."""
    import ctypes
    import fcntl

    device = task_device_path or task_device()
    fd = os.open(device, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, BLKFLSBUF, 0)
    finally:
        os.close(fd)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
    flags = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOATIME
    if libc.mount(device.encode(), TASK_ROOT.encode(), b'ext4', flags, None) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f'mount {device}: {os.strerror(error)}')


def package_target(spec):
    """`path/to/file.name` or `path.to.file.name` -> ('path.to.file', 'name')."""
    file, _, name = spec.rpartition('.')
    parts = file.replace('/', '.').split('.')
    if not file or not name.isidentifier() or not all(part.isidentifier() for part in parts):
        raise RequestError('HandlerNotFound', f'handler {spec!r} is not FILE.NAME (like lambda_function.lambda_handler)')
    return '.'.join(parts), name


def forget_package_modules():
    """Drops modules loaded from the package, so a new load imports them afresh."""
    prefix = TASK_ROOT + os.sep
    for key, module in list(sys.modules.items()):
        try:
            file = getattr(module, '__file__', None) or ''
            paths = list(getattr(module, '__path__', None) or ())  # namespace packages have no __file__
        except Exception:  # noqa: BLE001 - a module object that fails on attribute access is not ours
            continue
        if file.startswith(prefix) or any(str(path).startswith(prefix) for path in paths):
            del sys.modules[key]


def import_package_handler(module_name, name):
    import importlib

    if TASK_ROOT in sys.path:
        sys.path.remove(TASK_ROOT)
    sys.path.insert(0, TASK_ROOT)
    forget_package_modules()
    importlib.invalidate_caches()
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:  # the handler's module or one it imports: Lambda's Runtime.ImportModuleError
        stack = exception_info(exc)['stack']
        raise RequestError('ImportModuleError', f"Unable to import module '{module_name}' from {TASK_ROOT}: {exc}", stack) from None
    handler = getattr(module, name, None)
    if not callable(handler):
        what = 'is not defined' if handler is None else f'is not callable (type {type(handler).__name__})'
        raise RequestError('HandlerNotFound', f'handler {name!r} {what} in module {module_name!r}')
    return handler


# ---------------------------------------------------------------------------------------------------------
# Randomness of clones. Every VM is a clone of one snapshot taken after the agent started, so all clones begin
# with the same kernel CRNG (os.urandom, os.getrandom, uuid.uuid4, secrets, random.SystemRandom, and OpenSSL,
# which seeds from it) and the same `random` module state. The host sends a fresh `seed` in `renew` (right after
# every restore, before the VM is used) and in every load (PROTOCOL.md), applied before any user code runs:
# - in the VM: written to /dev/urandom (mixed into the kernel's input pool), then RNDRESEEDCRNG makes the kernel
#   CRNG reseed from that pool now rather than at its next scheduled reseed (up to a minute away); the agent is
#   PID 1 and root there. A failure fails the request: the host then discards the VM.
# - the module-level `random` instance (random.random, randint, choice, shuffle, uuid1's clock_seq...) is
#   reseeded from the seed plus os.urandom.
# - OpenSSL (ssl.RAND_bytes, TLS) seeds itself from the kernel on first use, which comes after the restore
#   unless the snapshot already held an initialised `_ssl`: then it also gets the seed (RAND_add).
# Still shared: str/bytes hash randomisation (fixed when the interpreter started).

RNDRESEEDCRNG = 0x5207  # _IO('R', 0x07), linux/random.h


def is_seed(value):
    return isinstance(value, str) and len(value) == 64 and all(c in '0123456789abcdefABCDEF' for c in value)


def is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def is_epoch_ms(value):
    return is_number(value) and 0 < value < 1e15


def apply_seed(seed_hex, owns_system):
    seed = bytes.fromhex(seed_hex)
    if owns_system:  # in the VM: a failure here leaves the clone predictable, so it fails the request
        import fcntl

        fd = os.open('/dev/urandom', os.O_WRONLY)
        try:
            os.write(fd, seed)
            fcntl.ioctl(fd, RNDRESEEDCRNG)  # after the write, so the new CRNG key depends on the seed
        finally:
            os.close(fd)
    import random

    random.seed(int.from_bytes(seed + os.urandom(16), 'big'))
    _ssl = sys.modules.get('_ssl')
    if _ssl is not None:
        _ssl.RAND_add(seed, 0.0)  # reseeds OpenSSL's primary DRBG with the seed as additional input


# ---------------------------------------------------------------------------------------------------------
# Invocations

class Context:
    """Lambda-style context, passed to handlers that take (event, context)."""

    def __init__(self, request_id, version, timeout_ms):
        self.aws_request_id = self.request_id = request_id
        self.function_version = str(version)
        self._deadline = time.monotonic() + timeout_ms / 1000.0

    def get_remaining_time_in_millis(self):
        return max(0, int((self._deadline - time.monotonic()) * 1000))


class Invocation:
    """One invoke request, from capturing the loaded version to sending its result."""

    def __init__(self, agent, request_id, message, loaded):
        self.agent = agent
        self.id = request_id
        self.loaded = loaded
        self.event = message.get('event')
        timeout_ms = message.get('timeout_ms')
        if not isinstance(timeout_ms, (int, float)) or isinstance(timeout_ms, bool):
            timeout_ms = 30000
        context = Context(str(message.get('request_id', '')), loaded.version, timeout_ms)
        self.args = (self.event, context)[:loaded.arity]
        self.logs = LogBuffer()
        self.started = 0.0
        self.duration_ms = 0.0

    def begin(self):
        """Called in the thread / task that runs the handler."""
        current_logs.set(self.logs)
        self.started = time.perf_counter()

    def end(self):
        self.duration_ms = (time.perf_counter() - self.started) * 1000.0

    def finish(self, value=None, exc=None):
        """Serialises the outcome and replies; never raises."""
        try:
            self.agent.send_raw(self._result_frame(value, exc))
        except BaseException as failure:  # noqa: BLE001 - one bad reply must not kill the agent
            self.agent.send_error(self.id, exception_info(failure))
        finally:
            self.agent.invocation_done()

    def _result_frame(self, value, exc):
        response_json = 'null'
        error = None
        if exc is not None:
            error = exception_info(exc)
        else:
            try:
                response_json = encode_json(value)
            except Exception as failure:  # TypeError (set, object), ValueError (NaN, cycle), RecursionError
                error = error_info('SerializationError', f'handler result is not JSON-serialisable: {failure}')
            else:
                response_json, size = sized_response(value, response_json)
                if size > MAX_RESPONSE_BYTES:
                    response_json = 'null'
                    error = error_info('ResponseTooLarge', f"the handler's response is {size} bytes of JSON, "
                                                           f'over the {MAX_RESPONSE_BYTES}-byte (6 MiB) limit')
        logs = self.logs.close()
        frame = self._frame(response_json, error, logs)
        if len(frame) > MAX_FRAME_BYTES:
            message = f'handler result of {len(response_json)} bytes does not fit a {MAX_FRAME_BYTES}-byte frame'
            frame = self._frame('null', error_info('ResponseTooLarge', message), logs[-100:])
        return frame

    def _frame(self, response_json, error, logs):
        result = {
            'status': 'error' if error else 'success',
            'error': error,
            'logs': logs,
            'duration_ms': self.duration_ms,
            'version': self.loaded.version,
        }
        # The response is already JSON: splice it in rather than encoding a multi-MB value twice.
        head = encode_json({'id': self.id, 'ok': True, 'result': result})
        return (head[:-2] + ',"response":' + response_json + '}}').encode('utf-8')


def run_sync(invocation):
    """Thread body for a plain `def` handler (an awaitable it returns is awaited on the loop)."""
    invocation.begin()
    try:
        value = invocation.loaded.handler(*invocation.args)
        if _is_awaitable(value):
            value = invocation.agent.event_loop().await_from_thread(value, invocation.logs)
    except BaseException as exc:  # noqa: BLE001 - SystemExit etc. from a handler are its errors
        invocation.end()
        invocation.finish(exc=exc)
    else:
        invocation.end()
        invocation.finish(value)


def _is_awaitable(value):
    return hasattr(value, '__await__') and not isinstance(value, type)


async def run_async(invocation, loop):
    """Task body for an `async def` handler; replying happens off the loop so it stays responsive."""
    invocation.begin()
    try:
        value = await invocation.loaded.handler(*invocation.args)
    except BaseException as exc:  # noqa: BLE001 - includes CancelledError and SystemExit
        invocation.end()
        outcome = (None, exc)
    else:
        invocation.end()
        outcome = (value, None)
    await loop.run_in_executor(None, invocation.finish, *outcome)


class EventLoop:
    """One asyncio loop in its own thread, started the first time an async handler needs it."""

    def __init__(self):
        import asyncio

        self.asyncio = asyncio
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, name='asyncio', daemon=True).start()

    def submit(self, coroutine):
        return self.asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def await_from_thread(self, awaitable, logs):
        async def wrapper():
            current_logs.set(logs)
            return await awaitable

        return self.submit(wrapper()).result()


# ---------------------------------------------------------------------------------------------------------
# The agent: dispatch of requests

class Agent:
    def __init__(self, transport):
        self.transport = transport
        # In the VM the agent owns the guest's clock and kernel CRNG; as a local process, never the host's.
        self.owns_system = transport.reconnects
        self.loaded = None  # a Loaded; replaced by one assignment, read once per invocation
        self.environment = Environment()
        self._inflight = 0
        self._inflight_lock = threading.Lock()
        self._loop = None
        self._loop_lock = threading.Lock()
        self._loads = None  # queue of pending loads, created with the loader thread
        self._python_version = None
        self._task_mounted = False

    # --- replies

    def send(self, message):
        self.send_raw(encode_json(message).encode('utf-8'))

    def send_raw(self, payload):
        try:
            self.transport.write_frame(payload)
        except OSError as exc:
            # The host end is gone (local mode) or the port vanished: nobody to answer any more.
            sys.__stderr__.write(f'fnvm agent: cannot write to host: {exc}\n')
            sys.__stderr__.flush()
            os._exit(1)

    def send_ok(self, request_id, result):
        self.send({'id': request_id, 'ok': True, 'result': result})

    def send_error(self, request_id, info):
        self.send({'id': request_id, 'ok': False, 'error': info})

    # --- reading

    def serve(self):
        reader = FrameReader()
        while True:
            try:
                chunk = self.transport.read()
            except OSError as exc:  # e.g. ENODEV: the port was unplugged
                sys.__stderr__.write(f'fnvm agent: cannot read from host: {exc}\n')
                sys.__stderr__.flush()
                os._exit(1)
            if chunk is None:
                reader.reset()  # host disconnected: a partial frame will never be completed
                continue
            if not chunk:
                return  # stdin closed: the host is done with us
            try:
                frames = reader.push(chunk)
            except ValueError as exc:
                # Frame boundaries are lost; PROTOCOL.md says to drop the connection.
                sys.__stderr__.write(f'fnvm agent: protocol error: {exc}\n')
                sys.__stderr__.flush()
                os._exit(1)
            for payload in frames:
                self.dispatch(payload)

    def dispatch(self, payload):
        request_id = None
        try:
            message = self._decode(payload)
            request_id = message['id']
            handle = {
                'ping': self.on_ping,
                'stats': self.on_stats,
                'settle': self.on_settle,
                'renew': self.on_renew,
                'clock': self.on_clock,
                'load': self.on_load,
                'invoke': self.on_invoke,
            }.get(message.get('type'))
            if handle is None:
                raise RequestError('UnknownRequest', f'unknown request type {message.get("type")!r}')
            handle(request_id, message)
        except RequestError as exc:
            self.send_error(request_id or leading_id(payload), exc.info)
        except BaseException as exc:  # noqa: BLE001 - a bad request must not stop the agent
            self.send_error(request_id or leading_id(payload), exception_info(exc))

    @staticmethod
    def _decode(payload):
        try:
            message = json.loads(payload)
        except (ValueError, RecursionError) as exc:  # ValueError includes UnicodeDecodeError
            raise RequestError('ProtocolError', f'frame cannot be decoded as JSON: {exc}') from None
        if not isinstance(message, dict):
            raise RequestError('ProtocolError', 'frame is not a JSON object')
        request_id = message.get('id')
        if not isinstance(request_id, int) or isinstance(request_id, bool) or request_id <= 0:
            raise RequestError('ProtocolError', f'request id must be a positive integer, got {request_id!r}')
        return message

    # --- ping / stats

    def on_ping(self, request_id, _message):
        if self._python_version is None:
            import platform

            self._python_version = platform.python_version()
        loaded = self.loaded
        self.send_ok(request_id, {
            'runtime': 'python',
            'runtime_version': self._python_version,
            'agent_version': AGENT_VERSION,
            'loaded_version': loaded.version if loaded else None,
            'time_ms': time.time() * 1000.0,
            'monotonic_ms': time.monotonic() * 1000.0,
        })

    def on_renew(self, request_id, message):
        # A clone that was just restored (or a VM just booted): the host's time and fresh random state, at once.
        seed, time_ms = message.get('seed'), message.get('time_ms')
        if not is_seed(seed) or not is_epoch_ms(time_ms):
            raise RequestError('ProtocolError', 'renew needs seed (64 hex chars) and time_ms (ms since the epoch)')
        if self.owns_system:
            time.clock_settime(time.CLOCK_REALTIME, time_ms / 1000.0)  # first: the reseed already sees it
        apply_seed(seed, self.owns_system)
        self.send_ok(request_id, {'time_ms': time.time() * 1000.0, 'system': self.owns_system})

    def on_clock(self, request_id, message):
        # Steps the clock by the host's measured correction: relative, so the frame's transit time is moot.
        adjust_ms = message.get('adjust_ms')
        if not is_number(adjust_ms) or abs(adjust_ms) > MAX_CLOCK_STEP_MS:
            raise RequestError('ProtocolError', f'clock needs adjust_ms, a number of at most {MAX_CLOCK_STEP_MS:g}')
        if self.owns_system:
            now = time.clock_gettime(time.CLOCK_REALTIME)
            time.clock_settime(time.CLOCK_REALTIME, now + adjust_ms / 1000.0)
        self.send_ok(request_id, {'time_ms': time.time() * 1000.0, 'system': self.owns_system})

    def on_settle(self, request_id, _message):
        # Before a snapshot: drop the guest page cache so (with init_on_free) the snapshot skips those pages.
        try:
            with open('/proc/sys/vm/drop_caches', 'w') as caches:
                caches.write('3')
            dropped = True
        except OSError:
            dropped = False  # not in a VM, or not allowed
        self.send_ok(request_id, {'dropped_caches': dropped})

    def on_stats(self, request_id, _message):
        loaded = self.loaded
        self.send_ok(request_id, {
            'inflight': self._inflight,
            'loaded_version': loaded.version if loaded else None,
            'memory_rss': memory_rss(),
        })

    # --- load

    def on_load(self, request_id, message):
        code, spec = message.get('code'), message.get('handler')
        env, version = message.get('env'), message.get('version')
        if not isinstance(code, str) or not isinstance(spec, str):
            raise RequestError('ProtocolError', 'load needs string fields code and handler')
        if not isinstance(version, int) or isinstance(version, bool):
            raise RequestError('ProtocolError', 'load needs an integer version')
        env = {} if env is None else env
        if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
            raise RequestError('ProtocolError', 'load env must be an object of strings')
        seed = message.get('seed')
        if seed is not None and not is_seed(seed):
            raise RequestError('ProtocolError', 'load seed must be 64 hex characters (32 bytes)')
        is_package = message.get('package', False)
        if not isinstance(is_package, bool) or (is_package and code != ''):
            raise RequestError('ProtocolError', 'load package must be a boolean, and code empty with it')
        # Loads run one at a time, in arrival order, off the reader thread (top-level code may be slow).
        if self._loads is None:
            import queue

            self._loads = queue.SimpleQueue()
            threading.Thread(target=self._loader, name='loader', daemon=True).start()
        self._loads.put((request_id, code, spec, env, version, seed, is_package))

    def _loader(self):
        while True:
            request_id, code, spec, env, version, seed, is_package = self._loads.get()
            logs = LogBuffer()
            started = time.perf_counter()
            try:
                if seed is not None:
                    apply_seed(seed, self.owns_system)  # first of all: even the top-level code must see this load's randomness
                if is_package:
                    self.load_package(spec, env, version, logs)
                else:
                    self.load(code, spec, env, version, logs)
            except RequestError as exc:
                logs.close()
                self.send_error(request_id, exc.info)
            except BaseException as exc:  # noqa: BLE001 - top-level code raised: the load fails with it
                logs.close()
                self.send_error(request_id, exception_info(exc))
            else:
                duration_ms = (time.perf_counter() - started) * 1000.0
                self.send_ok(request_id, {'version': version, 'duration_ms': duration_ms, 'logs': logs.close()})

    def load(self, code, spec, env, version, logs):
        """Builds the new version fully, then publishes it with one assignment."""
        name = handler_name(spec)
        bytecode = compile_module(code)
        previous = self.loaded
        undo_env = self.environment.apply(env, previous.env_keys if previous else ())
        module = new_module()
        old_module = sys.modules.get(MODULE_NAME)
        sys.modules[MODULE_NAME] = module  # dataclasses, pickle, typing look the module up by name
        token = current_logs.set(logs)
        try:
            remember_source(code)
            exec(bytecode, module.__dict__)
            handler = module.__dict__.get(name)
            if not callable(handler):
                what = 'is not defined' if handler is None else f'is not callable (type {type(handler).__name__})'
                raise RequestError('HandlerNotFound', f'handler {name!r} {what} in {MODULE_FILE}')
            is_async = is_async_function(handler)
            if is_async:
                self.event_loop()  # start it now rather than on the first invocation
            new = Loaded(handler, version, is_async, handler_arity(handler), module, tuple(env), code)
        except BaseException:
            undo_env()
            if old_module is None:
                sys.modules.pop(MODULE_NAME, None)
            else:
                sys.modules[MODULE_NAME] = old_module
            if previous is not None and previous.source is not None:
                remember_source(previous.source)
            raise
        finally:
            current_logs.reset(token)
        self.loaded = new  # the atomic swap: invocations already running keep the version they captured

    def load_package(self, spec, env, version, logs):
        """Like load, with the handler imported from the package on the task disk (mounted on first use)."""
        module_name, name = package_target(spec)
        self.mount_task()
        os.chdir(TASK_ROOT)  # Lambda's working directory: relative paths name the package's files
        previous = self.loaded
        undo_env = self.environment.apply(env, previous.env_keys if previous else ())
        token = current_logs.set(logs)
        try:
            handler = import_package_handler(module_name, name)
            is_async = is_async_function(handler)
            if is_async:
                self.event_loop()
            new = Loaded(handler, version, is_async, handler_arity(handler), sys.modules.get(module_name), tuple(env), None)
        except BaseException:
            undo_env()
            raise
        finally:
            current_logs.reset(token)
        self.loaded = new

    def mount_task(self):
        if self._task_mounted:
            return
        if not self.owns_system:
            raise RequestError('PackageMountError', 'packages need a VM: this agent runs as a plain process')
        try:
            mount_task()
        except OSError as exc:
            raise RequestError('PackageMountError', f'cannot mount the package at {TASK_ROOT}: {exc}') from None
        self._task_mounted = True

    # --- invoke

    def on_invoke(self, request_id, message):
        loaded = self.loaded  # captured once: a concurrent load does not affect this invocation
        if loaded is None:
            raise RequestError('NotLoaded', 'no code has been loaded yet')
        invocation = Invocation(self, request_id, message, loaded)
        with self._inflight_lock:
            self._inflight += 1
        try:
            if loaded.is_async:
                loop = self.event_loop()
                loop.submit(run_async(invocation, loop.loop))
            else:
                name = f'invoke-{request_id}'
                threading.Thread(target=run_sync, args=(invocation,), name=name, daemon=True).start()
        except BaseException:
            self.invocation_done()
            raise

    def invocation_done(self):
        with self._inflight_lock:
            self._inflight -= 1

    def event_loop(self):
        with self._loop_lock:
            if self._loop is None:
                self._loop = EventLoop()
            return self._loop


def memory_rss():
    try:
        with open('/proc/self/statm') as f:
            return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # peak, in KiB on Linux


def parse_port(argv):
    if not argv:
        return None
    if len(argv) == 2 and argv[0] == '--port' and argv[1]:
        return argv[1]
    sys.stderr.write('usage: agent.py [--port NAME]\n')
    sys.exit(2)


def main(argv):
    port = parse_port(argv)
    import ctypes, fcntl, random  # noqa: F401,E401 - for apply_seed and mount_task: imported before the snapshot, not at a first load
    global task_device_path
    if port:
        try:
            task_device_path = task_device()
        except OSError:
            pass  # reported by the first package load, if one comes
    transport = Transport.virtio_port(port) if port else Transport.stdio()
    real_stderr = sys.stderr
    sys.stdout = RoutedStream('<stdout>', real_stderr)
    sys.stderr = RoutedStream('<stderr>', real_stderr)
    Agent(transport).serve()
    real_stderr.flush()
    os._exit(0)  # skip interpreter teardown: daemon threads may still be running handlers


if __name__ == '__main__':
    main(sys.argv[1:])
