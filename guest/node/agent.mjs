#!/usr/bin/env node
// fnvm guest agent for Node.js functions. Speaks guest/PROTOCOL.md over a virtio-serial port (`--port NAME`,
// inside the VM) or over stdin/stdout (no arguments: a plain local process, for tests and benchmarks).
// Node built-ins only, so the guest image needs nothing but a `node` binary (20 or later).
import { AsyncLocalStorage } from 'node:async_hooks';
import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import nodeModule, { createRequire, syncBuiltinESMExports } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { StringDecoder } from 'node:string_decoder';
import { fileURLToPath, pathToFileURL } from 'node:url';
import util from 'node:util';
import vm from 'node:vm';

const AGENT_VERSION = 2;
const MAX_FRAME_BYTES = 16 * 1024 * 1024;
const MAX_LOG_BYTES = 1024 * 1024;
const MAX_RESPONSE_BYTES = 6 * 1024 * 1024; // PROTOCOL.md: the serialised response, UTF-8; exactly 6 MiB is allowed
const PORT_WAIT_MS = 10_000;
const PORT_POLL_MS = 20;

// Taken before anything is patched: the agent's own channels, which user code can never reach.
const realStdoutWrite = process.stdout.write.bind(process.stdout);
const realStderrWrite = process.stderr.write.bind(process.stderr);

/** Agent diagnostics: rare, and never mixed into an invocation's logs. */
function diag(message) {
  realStderrWrite(`[fnvm node agent] ${message}\n`);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------------------------------------------------
// Transports: `start(onChunk, onReset)` delivers incoming bytes, `send(buffer)` writes one whole frame.
// Each frame goes out as a single buffer, in order, so two frames never interleave.

function stdioTransport() {
  return {
    start(onChunk) {
      process.stdin.on('data', onChunk);
      process.stdin.on('end', () => process.exit(0)); // the host closed the channel: nothing left to serve
    },
    send: (frame) => realStdoutWrite(frame),
  };
}

async function portTransport(name) {
  const fd = await openPort(name);
  return {
    start: (onChunk, onReset) => readPort(fd, onChunk, onReset),
    send: queuedWriter(fd),
  };
}

/** The port appears when the virtio-serial driver has probed it, which may be just after boot: wait a bit. */
async function openPort(name) {
  const deadline = Date.now() + PORT_WAIT_MS;
  let lastError = null;
  for (;;) {
    const device = findPortDevice(name);
    if (device) {
      try {
        return fs.openSync(device, 'r+');
      } catch (error) {
        lastError = error;
      }
    }
    if (Date.now() >= deadline) {
      const why = lastError ? `: ${lastError.message}` : '';
      throw new Error(`virtio-serial port "${name}" not available after ${PORT_WAIT_MS} ms${why}`);
    }
    await sleep(PORT_POLL_MS);
  }
}

function findPortDevice(name) {
  const root = '/sys/class/virtio-ports';
  let entries;
  try {
    entries = fs.readdirSync(root);
  } catch {
    return null;
  }
  for (const entry of entries) {
    try {
      if (fs.readFileSync(path.join(root, entry, 'name'), 'utf8').trim() === name) return `/dev/${entry}`;
    } catch {
      // a port without a name, or one going away: not ours
    }
  }
  return null;
}

// A virtio-serial read returns EOF while no host is connected to the other end: poll until one (re)connects.
function readPort(fd, onChunk, onReset) {
  const stream = fs.createReadStream(null, { fd, highWaterMark: 1 << 20, autoClose: false });
  stream.on('data', onChunk);
  stream.on('end', () => {
    onReset();
    setTimeout(() => readPort(fd, onChunk, onReset), PORT_POLL_MS);
  });
  stream.on('error', (error) => fatal(`reading the port failed: ${error.message}`));
}

/**
 * Async writes (the event loop never blocks on the port). Frames queued while a write is in flight go out
 * together in the next write: under load, one port write (and one host notification) carries many replies.
 */
function queuedWriter(fd) {
  const queue = [];
  let busy = false;
  const writeFrom = (buffer, offset) => {
    fs.write(fd, buffer, offset, buffer.length - offset, null, (error, written) => {
      if (error) return fatal(`writing the port failed: ${error.message}`);
      if (offset + written < buffer.length) return writeFrom(buffer, offset + written);
      busy = false;
      next();
    });
  };
  const next = () => {
    if (busy || queue.length === 0) return;
    busy = true;
    writeFrom(queue.length === 1 ? queue.shift() : Buffer.concat(queue.splice(0)), 0);
  };
  return (frame) => {
    queue.push(frame);
    next();
  };
}

function fatal(message) {
  diag(message);
  process.exit(1);
}

// ---------------------------------------------------------------------------------------------------------
// Framing: [u32 big-endian length][UTF-8 JSON]. Chunks are only joined once a frame is complete, so a 6 MB
// payload arriving in 64 KiB pieces is copied once, not once per piece.

function encodeFrame(json) {
  const length = Buffer.byteLength(json);
  const frame = Buffer.allocUnsafe(4 + length);
  frame.writeUInt32BE(length, 0);
  frame.write(json, 4, 'utf8');
  return frame;
}

function frameReader(onFrame, onOversize) {
  let chunks = [];
  let size = 0;
  const push = (chunk) => {
    chunks.push(chunk);
    size += chunk.length;
    while (size >= 4) {
      if (chunks[0].length < 4) chunks = [Buffer.concat(chunks, size)];
      const length = chunks[0].readUInt32BE(0);
      if (length > MAX_FRAME_BYTES) return onOversize(length);
      if (size < 4 + length) return;
      const all = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size);
      const rest = all.subarray(4 + length);
      chunks = rest.length ? [rest] : [];
      size = rest.length;
      onFrame(all.subarray(4, 4 + length));
    }
  };
  const reset = () => {
    chunks = [];
    size = 0;
  };
  return { push, reset };
}

// ---------------------------------------------------------------------------------------------------------
// Log capture. Each invocation (and each load) runs in its own AsyncLocalStorage context, which follows
// every await, timer and callback it starts; console.* and process.stdout/stderr.write append to the
// capture of the current context. Output with no open capture (e.g. a timer left by a finished invocation)
// goes to the agent's stderr, so in stdio mode the real stdout only ever carries frames.

const logContext = new AsyncLocalStorage();

class LogCapture {
  #parts = [];
  #bytes = 0;
  #truncated = false;
  #open = true;

  run(fn) {
    return logContext.run(this, fn);
  }

  /** False once finished: the caller then sends the text to the agent's stderr instead. */
  append(text) {
    if (!this.#open) return false;
    if (this.#truncated) return true;
    const room = MAX_LOG_BYTES - this.#bytes;
    const size = Buffer.byteLength(text);
    if (size <= room) {
      this.#parts.push(text);
      this.#bytes += size;
    } else {
      // keep what fits, cut on a character boundary
      this.#parts.push(new StringDecoder('utf8').write(Buffer.from(text).subarray(0, room)));
      this.#truncated = true;
    }
    return true;
  }

  /** Closes the capture and returns its lines, without their newlines. */
  finish() {
    this.#open = false;
    const text = this.#parts.join('');
    this.#parts = [];
    const lines = text === '' ? [] : text.split(/\r?\n/);
    if (text.endsWith('\n')) lines.pop();
    if (this.#truncated) lines.push('[logs truncated]');
    return lines;
  }
}

function writeOutput(text) {
  if (logContext.getStore()?.append(text)) return;
  realStderrWrite(text);
}

// console.* is replaced too, not just the streams: the stock console would colour its output when the
// VM's stdout is a terminal. util.format gives the same text as console.log on a pipe.
function patchOutput() {
  for (const method of ['log', 'info', 'debug', 'warn', 'error']) {
    console[method] = (...args) => writeOutput(`${util.format(...args)}\n`);
  }
  console.trace = function trace(...args) {
    const record = { name: 'Trace', message: util.format(...args) };
    Error.captureStackTrace(record, trace);
    writeOutput(`${userStack(record.stack)}\n`);
  };
  process.stdout.write = capturedWrite;
  process.stderr.write = capturedWrite;
}

function capturedWrite(chunk, encoding, callback) {
  if (typeof encoding === 'function') [callback, encoding] = [encoding, undefined];
  writeOutput(chunkText(chunk, encoding));
  if (typeof callback === 'function') process.nextTick(callback);
  return true;
}

function chunkText(chunk, encoding) {
  if (typeof chunk === 'string') {
    return encoding && Buffer.isEncoding(encoding) && !/^utf-?8$/i.test(encoding)
      ? Buffer.from(chunk, encoding).toString('utf8')
      : chunk;
  }
  if (ArrayBuffer.isView(chunk)) return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength).toString('utf8');
  return String(chunk);
}

function silenceLoaderWarning() {
  const emitWarning = process.emitWarning;
  process.emitWarning = function emitUserWarning(warning, ...rest) {
    if (String(warning?.message ?? warning).includes('USE_MAIN_CONTEXT_DEFAULT_LOADER')) return;
    return emitWarning.call(this, warning, ...rest);
  };
}

// User code can leave a rejected promise or throw from a timer: report it, keep serving.
function installCrashGuards() {
  process.on('uncaughtException', (error) => diag(`uncaught exception (still serving): ${describeValue(error)}`));
  process.on('unhandledRejection', (reason) => diag(`unhandled rejection (still serving): ${describeValue(reason)}`));
}

function describeValue(value) {
  try {
    return value instanceof Error && value.stack ? value.stack : util.inspect(value);
  } catch {
    return '<unprintable value>';
  }
}

// ---------------------------------------------------------------------------------------------------------
// Randomness of clones. Every VM is a clone of one snapshot taken after this agent started, so all clones
// begin with the same kernel CRNG, the same OpenSSL DRBGs, the same V8 Math.random state and the same Node
// caches of random bytes (randomUUID's pool of 128 UUIDs' worth, randomInt's 6 KiB). The host therefore sends
// a fresh `seed` in `renew` (right after every restore, before the VM is used) and in every load (PROTOCOL.md):
// - the native helper mixes it into the kernel pool and makes the kernel CRNG reseed at once (RNDRESEEDCRNG),
//   then gives it to OpenSSL (RAND_add), whose primary DRBG reseeds from the new CRNG with the seed as
//   additional input; every child DRBG (main thread, libuv pool, workers) reseeds before its next output, so
//   key generation, signatures, ECDH, crypto.subtle and TLS diverge between clones;
// - the JS random APIs are wrapped once, at startup, and re-keyed here, because Node's caches of random bytes
//   and V8's Math.random state live in the JS heap, which no reseed reaches:
//   crypto byte APIs return OpenSSL's bytes XOR an AES-256-CTR keystream keyed from the seed (a XOR of two
//   independent streams is as random as the better one); randomUUID builds v4 UUIDs from such bytes;
//   randomInt shifts Node's result by a keystream-drawn offset (mod the range: still uniform) so Node keeps
//   validating its own arguments; Math.random becomes xoshiro128** seeded from the keystream.
// Worker threads are not wrapped: they start after the restore, and V8 seeds their Math.random from the
// (reseeded) OpenSSL.

// The native helper (fnvm_sys.c), built into the VM image only: in the VM the agent owns the guest's clock
// and kernel CRNG; as a plain local process it must never touch the host's.
let system = null;

const webcrypto = crypto.webcrypto; // === globalThis.crypto
const cryptoPrototype = Object.getPrototypeOf(webcrypto);
const nodeRandom = {
  randomBytes: crypto.randomBytes,
  randomFillSync: crypto.randomFillSync,
  randomFill: crypto.randomFill,
  randomInt: crypto.randomInt,
  randomUUID: crypto.randomUUID,
  getRandomValues: cryptoPrototype.getRandomValues,
  webRandomUUID: cryptoPrototype.randomUUID,
};

const KEYSTREAM_CHUNK = 4096;
const zeroChunk = Buffer.alloc(KEYSTREAM_CHUNK);
let keystreamCipher = null;
let keystream = Buffer.alloc(0);
let keystreamAt = 0;

/** XORs the next keystream bytes into `bytes` (a Uint8Array), in place. */
function mixKeystream(bytes) {
  let i = 0;
  while (i < bytes.length) {
    if (keystreamAt === keystream.length) {
      if (bytes.length - i >= KEYSTREAM_CHUNK) {
        bytes.set(keystreamCipher.update(bytes.subarray(i)), i); // large: CTR encryption is that XOR, natively
        return bytes;
      }
      keystream = keystreamCipher.update(zeroChunk); // small ones share a chunk of keystream
      keystreamAt = 0;
    }
    const end = Math.min(bytes.length, i + keystream.length - keystreamAt);
    while (i < end) bytes[i++] ^= keystream[keystreamAt++];
  }
  return bytes;
}

const viewBytes = (view) => new Uint8Array(view.buffer, view.byteOffset, view.byteLength);

/** The bytes randomFill(Sync) filled, computed as Node does (offset and size count elements). */
function filledBytes(buf, offset = 0, size = undefined) {
  const elementSize = buf.BYTES_PER_ELEMENT || 1;
  const start = (offset * elementSize) >>> 0;
  const length = size === undefined ? buf.byteLength - start : (size * elementSize) >>> 0;
  return ArrayBuffer.isView(buf)
    ? new Uint8Array(buf.buffer, buf.byteOffset + start, length)
    : new Uint8Array(buf, start, length);
}

/** `size` fresh bytes: OpenSSL's, mixed. */
function mixedBytes(size) {
  return mixKeystream(nodeRandom.randomFillSync(Buffer.allocUnsafeSlow(size)));
}

function randomBytes(size, callback) {
  if (callback === undefined) return mixKeystream(nodeRandom.randomBytes(size));
  if (typeof callback !== 'function') return nodeRandom.randomBytes(size, callback); // Node's own TypeError
  return nodeRandom.randomBytes(size, function randomBytesDone(error, buf) {
    if (!error) mixKeystream(buf);
    return Reflect.apply(callback, this, arguments);
  });
}

function randomFillSync(buf, offset, size) {
  const result = Reflect.apply(nodeRandom.randomFillSync, this, arguments); // validates, or throws
  mixKeystream(filledBytes(buf, offset, size));
  return result;
}

// randomFill(buf[, offset[, size]], callback): the callback mixes the filled bytes in before the user sees them.
function randomFill(buf, offset, size, callback) {
  const args = [...arguments];
  const at = typeof offset === 'function' ? 1 : typeof size === 'function' ? 2 : 3;
  const done = args[at];
  if (typeof done !== 'function') return Reflect.apply(nodeRandom.randomFill, this, args); // Node's own error
  const region = at === 1 ? [0, buf?.length] : at === 2 ? [offset, buf?.length - offset] : [offset, size];
  args[at] = function randomFillDone(error) {
    if (!error) mixKeystream(filledBytes(buf, ...region));
    return Reflect.apply(done, this, arguments);
  };
  return Reflect.apply(nodeRandom.randomFill, this, args);
}

function getRandomValues(array) {
  const result = Reflect.apply(nodeRandom.getRandomValues, this, arguments); // keeps Node's checks (this, type, quota)
  mixKeystream(viewBytes(result));
  return result;
}

// Like Node, UUIDs come from a pool of random bytes (one refill per 128 UUIDs); a re-key empties it.
const UUID_POOL_BYTES = 16 * 128;
const uuidPool = Buffer.alloc(UUID_POOL_BYTES);
let uuidPoolAt = UUID_POOL_BYTES;
const HEX = Array.from({ length: 256 }, (_, byte) => byte.toString(16).padStart(2, '0'));

function randomUUID(options) {
  if (options !== undefined) nodeRandom.randomUUID(options); // Node validates the options (its UUID is unused)
  let bytes = uuidPool;
  let i = uuidPoolAt;
  if (options?.disableEntropyCache) {
    bytes = mixedBytes(16);
    i = 0;
  } else {
    if (i === UUID_POOL_BYTES) {
      mixKeystream(nodeRandom.randomFillSync(uuidPool));
      i = 0;
    }
    uuidPoolAt = i + 16;
  }
  const h = (k) => HEX[bytes[i + k]];
  const version = HEX[(bytes[i + 6] & 0x0f) | 0x40];
  const variant = HEX[(bytes[i + 8] & 0x3f) | 0x80];
  return `${h(0)}${h(1)}${h(2)}${h(3)}-${h(4)}${h(5)}-${version}${h(7)}-${variant}${h(9)}-${h(10)}${h(11)}${h(12)}${h(13)}${h(14)}${h(15)}`;
}

function webRandomUUID() {
  if (this !== webcrypto) return nodeRandom.webRandomUUID.call(this); // throws Node's ERR_INVALID_THIS
  return randomUUID();
}

const intBytes = Buffer.alloc(6);

/** Uniform in [0, range), range <= 2^48, straight from the keystream (rejection sampling: no modulo bias). */
function keystreamInt(range) {
  const limit = 2 ** 48 - (2 ** 48 % range);
  for (;;) {
    const x = mixKeystream(intBytes.fill(0)).readUIntBE(0, 6);
    if (x < limit) return x % range;
  }
}

// randomInt([min, ]max[, callback]): Node's value (validated and uniform in [min, max)) plus a keystream offset.
function randomInt(min, max, callback) {
  const minGiven = max !== undefined && typeof max !== 'function';
  const low = minGiven ? min : 0;
  const range = (minGiven ? max : min) - low;
  const shift = (n) => low + ((n - low + keystreamInt(range)) % range);
  const done = minGiven ? callback : max;
  if (typeof done !== 'function') return shift(Reflect.apply(nodeRandom.randomInt, this, arguments));
  const shifted = function randomIntDone(error, n) {
    return Reflect.apply(done, this, error ? arguments : [error, shift(n)]);
  };
  return nodeRandom.randomInt(...(minGiven ? [min, max, shifted] : [min, shifted]));
}

// xoshiro128** (Blackman, Vigna) in 32-bit operations, two outputs per 53-bit double. Like V8's own
// Math.random, doubles are made 64 at a time in a tight loop (state in locals), then handed out one per call.
const mathState = new Int32Array(4);
const mathCache = new Float64Array(64);
let mathCacheLeft = 0;

function refillMathCache() {
  let [a, b, c, d] = mathState;
  for (let k = 0; k < mathCache.length; k++) {
    let x = Math.imul(b, 5);
    const high = Math.imul((x << 7) | (x >>> 25), 9) >>> 5; // 27 bits
    let t = b << 9;
    c ^= a; d ^= b; b ^= c; a ^= d; c ^= t; d = (d << 11) | (d >>> 21);
    x = Math.imul(b, 5);
    const low = Math.imul((x << 7) | (x >>> 25), 9) >>> 6; // 26 bits
    t = b << 9;
    c ^= a; d ^= b; b ^= c; a ^= d; c ^= t; d = (d << 11) | (d >>> 21);
    mathCache[k] = (high * 67108864 + low) / 9007199254740992; // / 2^53: [0, 1)
  }
  mathState.set([a, b, c, d]);
  mathCacheLeft = mathCache.length;
}

function random() {
  if (mathCacheLeft === 0) refillMathCache();
  return mathCache[--mathCacheLeft];
}

/** Re-keys every wrapper: a new keystream, an empty UUID pool, a new Math.random state (its cache emptied). */
function rekeyRandom(seed) {
  // The seed makes each clone different; OpenSSL's bytes keep the key secret even from whoever knows the seed.
  const key = crypto.createHash('sha256').update('fnvm-random-v1').update(seed).update(nodeRandom.randomBytes(32)).digest();
  keystreamCipher = crypto.createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  keystream = Buffer.alloc(0);
  keystreamAt = 0;
  uuidPoolAt = UUID_POOL_BYTES;
  mathState.set(new Int32Array(mixKeystream(new Uint8Array(16)).buffer));
  if (mathState.every((word) => word === 0)) mathState[0] = 1; // the one state xoshiro never leaves
  mathCacheLeft = 0;
}

/** At `renew` and at a seeded load, before any user code runs. */
function applySeed(seedHex) {
  const seed = Buffer.from(seedHex, 'hex');
  system?.reseed(seed); // the kernel CRNG and OpenSSL's DRBGs (PROTOCOL.md, "Randomness")
  rekeyRandom(seed); // after it: the new keys are drawn from the reseeded OpenSSL
}

const isSeed = (value) => typeof value === 'string' && /^[0-9a-fA-F]{64}$/.test(value);

// The module object is what require('crypto'), `import crypto from 'node:crypto'` and named imports (after
// syncBuiltinESMExports) all see; globalThis.crypto is crypto.webcrypto, whose methods live on its class.
// The unit tests check every entry point, so a Node upgrade that moves one shows up there.
function installRandomWrappers() {
  Object.assign(crypto, { randomBytes, randomFillSync, randomFill, randomInt, randomUUID });
  // crypto.getRandomValues is a read-only getter, but its function calls globalThis.crypto.getRandomValues.
  for (const alias of ['prng', 'pseudoRandomBytes', 'rng']) { // deprecated aliases of randomBytes
    if (alias in crypto) Object.defineProperty(crypto, alias, { value: randomBytes, writable: true, configurable: true });
  }
  cryptoPrototype.getRandomValues = getRandomValues;
  cryptoPrototype.randomUUID = webRandomUUID;
  Math.random = random;
  syncBuiltinESMExports();
  rekeyRandom(Buffer.alloc(0)); // until the first seeded load: as shared as the stock state was
}

// ---------------------------------------------------------------------------------------------------------
// Errors as the protocol reports them: {type, message, stack}.

/** An error the agent itself raises (NotLoaded, HandlerNotFound...): its stack would only show agent code. */
function agentError(type, message) {
  const error = new Error(message);
  error.name = type;
  error.stack = `${type}: ${message}`;
  return error;
}

function errorInfo(error) {
  try {
    if (error instanceof Error || util.types.isNativeError(error)) {
      return { type: errorType(error), message: String(error.message), stack: userStack(error.stack) };
    }
    return { type: 'Error', message: String(error), stack: '' };
  } catch {
    return { type: 'Error', message: describeValue(error), stack: '' };
  }
}

// Stack frames of the agent itself (and of the vm/async_hooks calls it makes) only distract the user.
const AGENT_FRAME = new RegExp(
  `${escapeRegExp(import.meta.url)}|${escapeRegExp(fileURLToPath(import.meta.url))}|\\(node:(async_hooks|vm|internal/vm):`,
);

function userStack(stack) {
  if (typeof stack !== 'string') return '';
  return stack
    .split('\n')
    .filter((line) => !(line.startsWith('    at ') && AGENT_FRAME.test(line)))
    .join('\n');
}

function escapeRegExp(text) {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

// `class NotFound extends Error {}` leaves name "Error": the class name says more.
function errorType(error) {
  const name = typeof error.name === 'string' && error.name ? error.name : 'Error';
  const constructorName = error.constructor?.name;
  return name === 'Error' && constructorName && constructorName !== 'Error' ? constructorName : name;
}

// ---------------------------------------------------------------------------------------------------------
// Loading user code.

const IDENTIFIER = /^[\p{ID_Start}$_][\p{ID_Continue}$\u200C\u200D]*$/u;
// A plain script: no file behind it, so `require` resolves built-ins (and nothing else) from a tmp path.
const SCRIPT_FILENAME = 'function.js';
const SCRIPT_PARAMS = ['exports', 'require', 'module', '__filename', '__dirname'];
const SCRIPT_PATH = path.join(os.tmpdir(), 'fnvm-function', SCRIPT_FILENAME);
const scriptRequire = createRequire(SCRIPT_PATH);
// Lets `import()` work inside scripts (Node >= 20.12; older Nodes just lack it). Its one-time
// ExperimentalWarning is about the agent, not the user's code: silenceLoaderWarning keeps it out of the logs.
const dynamicImport = vm.constants?.USE_MAIN_CONTEXT_DEFAULT_LOADER;
let moduleCount = 0;

/** `handler` or Lambda-style `file.handler` -> `handler`. */
function handlerName(spec) {
  const name = spec.slice(spec.lastIndexOf('.') + 1);
  if (!IDENTIFIER.test(name)) throw agentError('HandlerNotFound', `handler "${spec}" is not a JavaScript identifier`);
  return name;
}

/** Compiles and runs the code, returning the handler; throws SyntaxError, HandlerNotFound or a top-level error. */
async function findHandler(code, name) {
  let script;
  try {
    script = compileScript(code, name);
  } catch {
    const error = userSyntaxError(code);
    // the code compiles on its own, so only the name can break the appended return (`class`, `yield`...)
    if (!error) throw agentError('HandlerNotFound', `handler "${name}" is not a usable identifier`);
    if (!isModuleSyntaxError(error)) throw error;
    const namespace = await importModule(code);
    return pickHandler(name, [namespace[name], namespace.default?.[name], namespace.default]);
  }
  const { exports, binding } = runScript(script);
  return pickHandler(name, [exports?.[name], binding, exports]);
}

function pickHandler(name, candidates) {
  const handler = candidates.find((candidate) => typeof candidate === 'function');
  if (handler) return handler;
  throw agentError(
    'HandlerNotFound',
    `no function "${name}" in the code: declare it at top level, assign module.exports.${name} or export it`,
  );
}

// The code becomes a function body, like a CommonJS module; the appended return hands back a top-level
// `function NAME` / `const NAME` that was declared without being exported.
function compileScript(code, name) {
  const body = `${code}\n;return typeof ${name} === 'undefined' ? undefined : ${name};`;
  const options = { filename: SCRIPT_FILENAME };
  if (dynamicImport) options.importModuleDynamically = dynamicImport;
  return vm.compileFunction(body, SCRIPT_PARAMS, options);
}

// Compile errors are reported for the user's code alone, so they never point at the appended return.
function userSyntaxError(code) {
  try {
    vm.compileFunction(code, SCRIPT_PARAMS, { filename: SCRIPT_FILENAME });
    return null;
  } catch (error) {
    return error;
  }
}

function runScript(script) {
  const module = { exports: {}, id: '.', filename: SCRIPT_PATH, loaded: false, require: scriptRequire };
  const dirname = path.dirname(SCRIPT_PATH);
  const binding = script.call(module.exports, module.exports, scriptRequire, module, SCRIPT_PATH, dirname);
  module.loaded = true;
  return { exports: module.exports, binding };
}

// What V8 says when it meets ES module syntax in a script.
function isModuleSyntaxError(error) {
  return (
    error instanceof SyntaxError &&
    /\bexport\b|import statement|import\.meta|top level bodies of modules/.test(error.message)
  );
}

// import() needs a URL: each load gets a fresh file name (so never an old cached module), deleted once loaded.
async function importModule(code) {
  const file = path.join(os.tmpdir(), `fnvm-node-${process.pid}-${++moduleCount}.mjs`);
  await fsp.writeFile(file, code);
  try {
    return await import(pathToFileURL(file).href);
  } finally {
    await fsp.rm(file, { force: true });
  }
}

// ---------------------------------------------------------------------------------------------------------
// Packages: the code is a directory tree on the task disk (a read-only virtio-blk device, found by its
// serial), mounted at /var/task at the first load that asks for it. The handler is `path/to/file.name`.

const TASK_ROOT = '/var/task';
const TASK_URL = `${pathToFileURL(TASK_ROOT).href}/`;
const TASK_SERIAL = 'fnvm-task'; // src/vm/qemu-args.ts
const PACKAGE_EXTENSIONS = ['.js', '.mjs', '.cjs'];
let taskMounted = false;
/** Looked up when the agent starts, so a base snapshot already knows it (sysfs reads are slow under TCG). */
let taskDevicePath = null;
/** Counts package loads: each imports its ES modules under new URLs, so none comes from an older load. */
let packageLoads = 0;
let packageHooks = false;

function taskDevice() {
  for (const name of fs.readdirSync('/sys/block')) {
    try {
      if (fs.readFileSync(`/sys/block/${name}/serial`, 'utf8').trim() === TASK_SERIAL) return `/dev/${name}`;
    } catch {
      // no serial (the root disk has none): not the task disk
    }
  }
  throw new Error(`no block device with serial ${TASK_SERIAL}`);
}

function mountTask() {
  if (taskMounted) return;
  if (!system) throw agentError('PackageMountError', 'packages need a VM: this agent runs as a plain process');
  try {
    taskDevicePath ??= taskDevice();
    system.mountTask(taskDevicePath, TASK_ROOT);
  } catch (error) {
    throw agentError('PackageMountError', `cannot mount the package at ${TASK_ROOT}: ${error.message}`);
  }
  taskMounted = true;
}

/** `path/to/file.name` -> { file: 'path/to/file', name }. */
function packageHandler(spec) {
  const dot = spec.lastIndexOf('.');
  const file = spec.slice(0, dot);
  const name = spec.slice(dot + 1);
  if (dot <= 0 || !IDENTIFIER.test(name)) {
    throw agentError('HandlerNotFound', `handler "${spec}" is not FILE.NAME (like index.handler or src/app.handler)`);
  }
  if (file.split('/').some((part) => part === '' || part === '.' || part === '..')) {
    throw agentError('HandlerNotFound', `handler "${spec}": its file must be a relative path inside ${TASK_ROOT}`);
  }
  return { file, name };
}

// ES modules are cached by URL: from the second load on, every module of the package gets the load's number as
// a query, so a new load (new env, new handler) evaluates them afresh. `require` has its own cache, cleared of
// the package instead.
function versionPackageModules() {
  if (packageHooks || typeof nodeModule.registerHooks !== 'function') return;
  packageHooks = true;
  nodeModule.registerHooks({
    resolve(specifier, context, nextResolve) {
      const result = nextResolve(specifier, context);
      const esm = context.conditions?.includes('import');
      if (!esm || !result.url.startsWith(TASK_URL) || result.url.includes('?')) return result;
      return { ...result, url: `${result.url}?v=${packageLoads}` };
    },
  });
}

function forgetPackageRequires() {
  for (const key of Object.keys(scriptRequire.cache)) {
    if (key.startsWith(`${TASK_ROOT}/`)) delete scriptRequire.cache[key];
  }
}

const isFile = (file) => fs.statSync(file, { throwIfNoEntry: false })?.isFile() ?? false;

/** Loads the handler's file: CommonJS through require, ESM through import(), as Node tells them apart. */
async function findPackageHandler({ file, name }) {
  const found = PACKAGE_EXTENSIONS.map((ext) => path.join(TASK_ROOT, file + ext)).find(isFile);
  if (!found) {
    throw agentError('ImportModuleError', `Cannot find module '${file}' in ${TASK_ROOT} (tried ${PACKAGE_EXTENSIONS.join(', ')})`);
  }
  forgetPackageRequires();
  packageLoads += 1;
  let namespace;
  try {
    namespace = await (isEsm(found) ? importPackageModule(found) : requireOrImport(found));
  } catch (error) {
    if (error?.code === 'ERR_MODULE_NOT_FOUND' || error?.code === 'MODULE_NOT_FOUND') {
      throw agentError('ImportModuleError', `${path.relative(TASK_ROOT, found)}: ${error.message}`);
    }
    throw error;
  }
  const handler = [namespace[name], namespace.default?.[name]].find((candidate) => typeof candidate === 'function');
  if (handler) return handler;
  throw agentError('HandlerNotFound', `${path.relative(TASK_ROOT, found)} exports no function "${name}"`);
}

// require is the fast path for CommonJS (import() of a CommonJS file also starts the ESM loader and parses
// the file for its exports). A .js file with ES module syntax but no "type" goes to import() after all.
function requireOrImport(file) {
  try {
    return scriptRequire(file);
  } catch (error) {
    if (error?.code !== 'ERR_REQUIRE_ESM' && error?.code !== 'ERR_REQUIRE_ASYNC_MODULE' && !isModuleSyntaxError(error)) throw error;
    return importPackageModule(file);
  }
}

// The first load imports the package's modules under their own URLs (import.meta.url as on Lambda); a VM
// loads its package again only for a new env or handler, and those loads number them.
function importPackageModule(file) {
  if (packageLoads > 1) versionPackageModules();
  return import(`${pathToFileURL(file).href}${packageLoads > 1 ? `?v=${packageLoads}` : ''}`);
}

/**
 * Runs require and import() once on files of their own: the base snapshot is taken after this, so a VM's first
 * package load finds both loaders initialised (under TCG their first use costs a few hundred ms).
 */
async function warmModuleLoaders() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fnvm-warm-'));
  try {
    fs.writeFileSync(path.join(dir, 'warm.cjs'), 'module.exports = { warm: true };\n');
    fs.writeFileSync(path.join(dir, 'warm.mjs'), 'export const warm = true;\n');
    scriptRequire(path.join(dir, 'warm.cjs'));
    await import(pathToFileURL(path.join(dir, 'warm.mjs')).href);
    delete scriptRequire.cache[path.join(dir, 'warm.cjs')];
  } catch (error) {
    diag(`module loaders not warmed: ${describeValue(error)}`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Node's rule: .mjs is ESM, .cjs is not, a .js file is if the nearest package.json says "type": "module". */
function isEsm(file) {
  if (file.endsWith('.mjs')) return true;
  if (file.endsWith('.cjs')) return false;
  for (let dir = path.dirname(file); ; dir = path.dirname(dir)) {
    const manifest = path.join(dir, 'package.json');
    if (isFile(manifest)) {
      try {
        return JSON.parse(fs.readFileSync(manifest, 'utf8'))?.type === 'module';
      } catch {
        return true; // import() reports the broken package.json in Node's own words
      }
    }
    if (dir === path.dirname(dir)) return false;
  }
}

// env: variables from the current load. A variable a later load drops goes back to the value it had before
// any load touched it (usually: absent); variables no load ever set are left alone.
let loadedEnv = {};
const originalEnv = new Map();

/** Applies `env` and returns the env it replaced, so a failed load can put it back. */
function applyEnv(env) {
  for (const key of Object.keys(loadedEnv)) {
    if (Object.hasOwn(env, key)) continue;
    const original = originalEnv.get(key);
    if (original === undefined) delete process.env[key];
    else process.env[key] = original;
  }
  for (const [key, value] of Object.entries(env)) {
    if (!originalEnv.has(key)) originalEnv.set(key, process.env[key]);
    process.env[key] = value;
  }
  const previous = loadedEnv;
  loadedEnv = env;
  return previous;
}

// ---------------------------------------------------------------------------------------------------------
// Requests.

/** The code serving invocations: replaced in one assignment, only once a load has fully succeeded. */
let current = null; // { handler, version }
let inflight = 0;
// Loads run one after another, so env bookkeeping and the swap never race each other.
let loadQueue = Promise.resolve();

const requests = {
  ping: () => ({
    runtime: 'node',
    runtime_version: process.version,
    agent_version: AGENT_VERSION,
    loaded_version: current?.version ?? null,
    time_ms: Date.now(),
    monotonic_ms: performance.now(),
  }),
  stats: () => ({ inflight, loaded_version: current?.version ?? null, memory_rss: process.memoryUsage.rss() }),
  settle,
  renew,
  clock,
  load: (request) => {
    const result = loadQueue.then(() => load(request));
    loadQueue = result.catch(() => {});
    return result;
  },
  invoke,
};

/** Before a snapshot: drop the guest page cache so (with init_on_free) the snapshot skips those pages. */
function settle() {
  try {
    fs.writeFileSync('/proc/sys/vm/drop_caches', '3');
    return { dropped_caches: true };
  } catch {
    return { dropped_caches: false }; // not in a VM, or not allowed
  }
}

/** A clone that was just restored (or a VM just booted): the host's time and fresh random state, at once. */
function renew(request) {
  const { seed, time_ms: timeMs } = request;
  if (!isSeed(seed) || !isEpochMs(timeMs)) {
    throw agentError('ProtocolError', 'renew needs seed (64 hex chars) and time_ms (ms since the epoch)');
  }
  system?.setClock(timeMs); // first: the reseed, and everything after it, already see the right time
  applySeed(seed);
  return { time_ms: Date.now(), system: system !== null };
}

/** Steps the clock by the host's measured correction; relative, so the time the frame spent in transit is moot. */
function clock(request) {
  const { adjust_ms: adjustMs } = request;
  if (typeof adjustMs !== 'number' || !Number.isFinite(adjustMs) || Math.abs(adjustMs) > MAX_CLOCK_STEP_MS) {
    throw agentError('ProtocolError', `clock needs adjust_ms, a number of at most ${MAX_CLOCK_STEP_MS} in size`);
  }
  system?.stepClock(adjustMs);
  return { time_ms: Date.now(), system: system !== null };
}

const MAX_CLOCK_STEP_MS = 1e12;
const isEpochMs = (value) => typeof value === 'number' && Number.isFinite(value) && value > 0 && value < 1e15;

async function load(request) {
  const { code, handler, version, env = {}, seed = null, package: isPackage = false } = request;
  if (
    typeof code !== 'string' || typeof handler !== 'string' || !Number.isInteger(version) || !isStringMap(env) ||
    (seed !== null && !isSeed(seed)) || typeof isPackage !== 'boolean' || (isPackage && code !== '')
  ) {
    throw agentError(
      'ProtocolError',
      'load needs code (string, empty with package), handler (string), version (int), env (string map), ' +
        'optional seed (64 hex chars), optional package (boolean)',
    );
  }
  if (seed !== null) applySeed(seed); // first of all: even the top-level code must see this load's randomness
  const target = isPackage ? packageHandler(handler) : { name: handlerName(handler) };
  const started = performance.now();
  if (isPackage) {
    mountTask();
    process.chdir(TASK_ROOT); // Lambda's working directory: relative paths name the package's files
  }
  const previousEnv = applyEnv(env); // before the code runs: its top level may read the variables
  const capture = new LogCapture();
  try {
    const fn = await capture.run(() => (isPackage ? findPackageHandler(target) : findHandler(code, target.name)));
    current = { handler: fn, version };
    return { version, duration_ms: elapsedMs(started), logs: capture.finish() };
  } catch (error) {
    capture.finish();
    applyEnv(previousEnv);
    throw error;
  }
}

async function invoke(request) {
  const loaded = current; // this invocation keeps this code even if a reload lands while it runs
  if (!loaded) throw agentError('NotLoaded', 'no code loaded yet: send a load request first');
  const { request_id: requestId, event = null, timeout_ms: timeoutMs } = request;
  if (typeof requestId !== 'string' || typeof timeoutMs !== 'number') {
    throw agentError('ProtocolError', 'invoke needs request_id (string), event, timeout_ms (number)');
  }
  const context = invocationContext(requestId, loaded.version, timeoutMs);
  const capture = new LogCapture();
  const started = performance.now();
  let outcome;
  inflight += 1;
  try {
    const responseJson = await capture.run(() => callHandler(loaded.handler, event, context));
    outcome = { status: 'success', error: null, response: new SerialisedJson(responseJson) };
  } catch (error) {
    outcome = { status: 'error', error: errorInfo(error), response: null };
  } finally {
    inflight -= 1;
  }
  const durationMs = elapsedMs(started);
  const { status, error, response } = outcome;
  return { status, error, logs: capture.finish(), duration_ms: durationMs, version: loaded.version, response };
}

// Runs entirely inside the invocation's log context: the handler, awaiting a thenable, and any toJSON.
async function callHandler(handler, event, context) {
  const value = await handler(event, context);
  let json;
  try {
    json = JSON.stringify(value) ?? 'null'; // undefined (or a function, a symbol) -> null
  } catch (error) {
    throw agentError('SerializationError', `the handler's result is not JSON-serialisable: ${error.message}`);
  }
  // Measured here so an oversized result is an ordinary error result, not a reply too big to send. UTF-8
  // takes at most 3 bytes per UTF-16 unit, so short texts need no measuring.
  const bytes = json.length > MAX_RESPONSE_BYTES / 3 ? Buffer.byteLength(json) : 0;
  if (bytes > MAX_RESPONSE_BYTES) {
    throw agentError('ResponseTooLarge', `the handler's response is ${bytes} bytes of JSON, over the ${MAX_RESPONSE_BYTES}-byte (6 MiB) limit`);
  }
  return json;
}

function invocationContext(requestId, version, timeoutMs) {
  const deadline = performance.now() + timeoutMs;
  return {
    requestId,
    awsRequestId: requestId,
    functionVersion: String(version),
    getRemainingTimeInMillis: () => Math.max(0, Math.round(deadline - performance.now())),
  };
}

const elapsedMs = (started) => Math.round((performance.now() - started) * 1000) / 1000;

function isStringMap(value) {
  return (
    typeof value === 'object' && value !== null && !Array.isArray(value) &&
    Object.values(value).every((item) => typeof item === 'string')
  );
}

/** A response already serialised once by callHandler: spliced into the reply, not serialised again. */
class SerialisedJson {
  constructor(text) {
    this.text = text;
  }
}

async function handleFrame(body) {
  let request;
  try {
    request = JSON.parse(body.toString('utf8'));
  } catch (error) {
    return failure(leadingId(body), agentError('ProtocolError', `frame is not valid JSON: ${error.message}`));
  }
  if (typeof request !== 'object' || request === null || Array.isArray(request) || !Number.isInteger(request.id)) {
    const id = Number.isInteger(request?.id) ? request.id : null;
    return failure(id, agentError('ProtocolError', 'a request is a JSON object with an integer id and a type'));
  }
  const handle = Object.hasOwn(requests, request.type) ? requests[request.type] : null;
  if (!handle) return failure(request.id, agentError('UnknownRequest', `unknown request type ${JSON.stringify(request.type)}`));
  try {
    return { id: request.id, ok: true, result: await handle(request) };
  } catch (error) {
    return failure(request.id, error);
  }
}

const failure = (id, error) => ({ id, ok: false, error: errorInfo(error) });

/** The host writes `id` first (PROTOCOL.md), so a frame too deep or broken to parse can still be answered. */
function leadingId(body) {
  const match = /^\{"id":(\d{1,15})[,}]/.exec(body.subarray(0, 32).toString('latin1'));
  return match ? Number(match[1]) : null;
}

function replyJson(reply) {
  const response = reply.ok ? reply.result.response : undefined;
  if (!(response instanceof SerialisedJson)) return JSON.stringify(reply);
  // `response` is the last key of `result`, itself the last key of the reply: its null is the text's tail.
  const { response: _, ...rest } = reply.result;
  const text = JSON.stringify({ id: reply.id, ok: true, result: { ...rest, response: null } });
  return `${text.slice(0, -'null}}'.length)}${response.text}}}`;
}

function encodeReply(reply) {
  const json = replyJson(reply);
  if (Buffer.byteLength(json) <= MAX_FRAME_BYTES) return encodeFrame(json);
  const error = agentError('FrameTooLarge', `the reply exceeds the ${MAX_FRAME_BYTES}-byte frame limit`);
  return encodeFrame(JSON.stringify(failure(reply.id, error)));
}

// ---------------------------------------------------------------------------------------------------------
// Startup.

function loadSystemHelper() {
  try {
    return createRequire(import.meta.url)('./fnvm_sys.node');
  } catch (error) {
    fatal(`cannot load the native helper (clock, reseeding): ${error.message}`); // a VM without it is unsafe to clone
  }
}

function parseArgs(args) {
  if (args.length === 0) return null;
  if (args.length === 2 && args[0] === '--port' && args[1]) return args[1];
  diag('usage: agent.mjs [--port NAME]');
  process.exit(2);
}

async function main() {
  const portName = parseArgs(process.argv.slice(2));
  if (portName !== null) system = loadSystemHelper();
  if (system) {
    try {
      taskDevicePath = taskDevice();
    } catch {
      // reported by the first package load, if one comes
    }
  }
  patchOutput();
  installRandomWrappers();
  silenceLoaderWarning();
  if (system) await warmModuleLoaders();
  installCrashGuards();
  let transport;
  try {
    transport = portName === null ? stdioTransport() : await portTransport(portName);
  } catch (error) {
    fatal(error.message);
  }
  const respond = (body) =>
    handleFrame(body)
      .then((reply) => transport.send(encodeReply(reply)))
      .catch((error) => diag(`could not reply: ${describeValue(error)}`));
  const reader = frameReader(respond, (length) => fatal(`incoming frame of ${length} bytes exceeds the limit`));
  transport.start(reader.push, reader.reset);
}

await main();
