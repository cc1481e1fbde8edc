// Randomised bad input against every endpoint of the Functions API: malformed JSON, wrong types, huge
// strings, unicode, deep nesting, unknown fields, odd content types, odd ids and odd query strings.
// The server must never answer 500 nor crash, every 4xx must be {"error": string}, and two reference
// functions deployed first must come out byte-for-byte unchanged, still working, with their history.
//
// Seeded: the seed is printed; FUZZ_SEED=<n> reproduces a run. FUZZ_COUNT (default 600) bounds the
// number of requests and FUZZ_BUDGET_MS (default 75000) the time spent sending them.
import assert from 'node:assert/strict';
import { randomInt } from 'node:crypto';
import { Agent, request as httpRequest } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { liveProcessCount } from '../src/vm/processes.js';
import { startTestServer, waitForState, type TestServer } from './support/server.js';

const seed = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) >>> 0 : randomInt(2 ** 31);
const requestCount = Number(process.env.FUZZ_COUNT ?? 600);
const budgetMs = Number(process.env.FUZZ_BUDGET_MS ?? 75_000);
console.log(`fuzz-api seed ${seed} (reproduce with FUZZ_SEED=${seed})`);

// ---------------------------------------------------------------------------------------------------
// Seeded randomness

class Rng {
  private state: number;
  constructor(seed: number) {
    this.state = seed >>> 0;
  }
  /** mulberry32 */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  between(min: number, max: number): number {
    return min + this.int(max - min + 1);
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
  /** Picks by weight: [[weight, value], ...]. */
  weighted<T>(items: ReadonlyArray<readonly [number, T]>): T {
    let r = this.next() * items.reduce((sum, [w]) => sum + w, 0);
    for (const [w, value] of items) if ((r -= w) < 0) return value;
    return items[items.length - 1]![1];
  }
}

const rng = new Rng(seed);

// ---------------------------------------------------------------------------------------------------
// JSON text with exact control: Raw is copied verbatim (invalid literals, -0, deep nesting), and top-level
// bodies are ordered key/value pairs, so duplicate keys and "__proto__" can be sent.

class Raw {
  constructor(readonly text: string) {}
}
type J = null | boolean | number | string | Raw | J[] | { [key: string]: J };
type Pairs = Array<[string, J]>;

function toJson(value: J): string {
  if (value instanceof Raw) return value.text;
  if (Array.isArray(value)) return `[${value.map(toJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    return `{${Object.entries(value).map(([k, v]) => `${JSON.stringify(k)}:${toJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

const pairsJson = (pairs: Pairs) => `{${pairs.map(([k, v]) => `${JSON.stringify(k)}:${toJson(v)}`).join(',')}}`;

/** The most deeply nested part of a JSON text (strings skipped); enough to decide whether to compare echoes. */
function jsonDepth(text: string): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 92) i++;
      else if (c === 34) inString = false;
    } else if (c === 34) inString = true;
    else if (c === 91 || c === 123) max = Math.max(max, ++depth);
    else if (c === 93 || c === 125) depth--;
  }
  return max;
}

/** Nesting depth of a parsed JSON value (iterative: values may nest 50,000 deep). */
function valueDepth(value: unknown): number {
  let max = 0;
  const stack: Array<[unknown, number]> = [[value, 1]];
  while (stack.length) {
    const [v, depth] = stack.pop()!;
    if (v === null || typeof v !== 'object') continue;
    max = Math.max(max, depth);
    for (const child of Object.values(v)) stack.push([child, depth + 1]);
  }
  return max;
}

// ---------------------------------------------------------------------------------------------------
// Value generators

const unicodeSamples = [
  'héllo wörld', 'Ελληνικά', 'русский', '中文字符', '日本語テキスト', '한국어',
  '😀🎉👩‍👩‍👧‍👦🏳️‍🌈', '\u202egnp.exe', 'مرحبا بالعالم', 'שלום', '\u0000', 'a\u0000b', '\u0001\u001f\u007f',
  '\ud800', '\udfff', 'x\ud83dy', '\ufeff', '\ufffd', '\u200b\u200c\u200d', '\u2028\u2029', 'e\u0301\u0301\u0301',
  '𝕳𝖊𝖑𝖑𝖔', '\\', '"', "'; DROP TABLE functions; --", '<script>alert(1)</script>', '${process.exit(1)}',
  '%s%n%x', '../../../etc/passwd', '\r\n\r\nHTTP/1.1 200 OK',
];

function randomString(maxLength = 40): string {
  switch (rng.int(4)) {
    case 0:
      return rng.pick(unicodeSamples);
    case 1: {
      let s = '';
      const n = rng.int(maxLength);
      for (let i = 0; i < n; i++) s += String.fromCharCode(rng.int(0x10000)); // lone surrogates included
      return s;
    }
    case 2:
      return rng.pick(unicodeSamples) + rng.pick(unicodeSamples);
    default: {
      const n = rng.int(maxLength);
      let s = '';
      for (let i = 0; i < n; i++) s += String.fromCharCode(32 + rng.int(95));
      return s;
    }
  }
}

const oddNumbers: J[] = [
  0, 1, -1, 1.5, -273.15, 1e308, -1e308, 5e-324, 1e21, 2 ** 53, 2 ** 53 + 2, 0.1 + 0.2, 123456789,
  new Raw('-0'), new Raw('1e400'), new Raw('-1e400'), new Raw('9007199254740993'), new Raw('1E2'), new Raw('0.0'),
];

/** A huge string: 1 to 5 MB (of UTF-8), ASCII or not. */
function hugeString(): string {
  const bytes = rng.between(1, 5) * 1024 * 1024;
  switch (rng.int(3)) {
    case 0:
      return 'x'.repeat(bytes);
    case 1:
      return 'é'.repeat(bytes / 2);
    default:
      return '😀a'.repeat(Math.floor(bytes / 5));
  }
}

function deepNesting(depth: number): Raw {
  switch (rng.int(3)) {
    case 0:
      return new Raw('['.repeat(depth) + ']'.repeat(depth));
    case 1:
      return new Raw('{"a":'.repeat(depth) + '1' + '}'.repeat(depth));
    default:
      return new Raw('[{"k":'.repeat(depth / 2) + '"leaf"' + '}]'.repeat(depth / 2));
  }
}

const deepDepth = () => rng.pick([500, 511, 512, 513, 1000, 2000, 5000, 10_000, 10_000, 50_000]);

/** Any JSON value, valid JSON, shallow (depth <= 4) unless it picks deep nesting. */
function randomValue(depth = 0, allowHuge = false): J {
  const kind = rng.weighted<string>([
    [3, 'string'], [2, 'number'], [1, 'literal'], [depth < 4 ? 2 : 0, 'array'], [depth < 4 ? 3 : 0, 'object'],
    [depth === 0 ? 0.3 : 0, 'deep'], [allowHuge && depth < 2 ? 0.2 : 0, 'huge'],
  ]);
  switch (kind) {
    case 'string':
      return randomString();
    case 'number':
      return rng.pick(oddNumbers);
    case 'literal':
      return rng.pick([null, true, false]);
    case 'array':
      return Array.from({ length: rng.int(5) }, () => randomValue(depth + 1, allowHuge));
    case 'object': {
      const out: { [key: string]: J } = {};
      for (let i = rng.int(5); i > 0; i--) out[randomKey()] = randomValue(depth + 1, allowHuge);
      return out;
    }
    case 'deep':
      return deepNesting(deepDepth());
    default:
      return hugeString();
  }
}

/** Object keys that are not prototype-pollution vectors (those have their own generator). */
function randomKey(): string {
  const key = rng.chance(0.5) ? randomString(12) : rng.pick(['a', 'event', 'name', 'x', '', ' ', 'toString', 'constructor', '0', 'hasOwnProperty']);
  return key === '__proto__' || key === 'prototype' ? 'p' : key;
}

// ---------------------------------------------------------------------------------------------------
// Function-definition fields: values of the wrong type and values of the right type but out of bounds.

type FieldKind = 'string' | 'integer' | 'env';
const fieldKinds: Record<string, FieldKind> = {
  name: 'string', runtime: 'string', code: 'string', handler: 'string',
  vcpu: 'integer', memory_mb: 'integer', timeout_seconds: 'integer', max_concurrency: 'integer', env_vars: 'env',
};
const fields = Object.keys(fieldKinds);

function wrongType(field: string): J {
  const kind = fieldKinds[field]!;
  const common: J[] = [null, true, false, [], {}, [rng.pick(['node', 'x', 1])], { value: 'x' }, deepNesting(rng.pick([100, 10_000]))];
  if (kind === 'string') return rng.pick([...common, ...oddNumbers]);
  if (kind === 'integer') {
    return rng.pick([...common, '1', '256', '', 'abc', '1e3', ' 2', 1.5, 4.000000001, new Raw('1e400'), new Raw('-1e400'), { $numberInt: '1' }]);
  }
  return rng.pick([null, true, false, [], ['A=1'], 'A=1', '', 1, 0, new Raw('-0'), deepNesting(rng.pick([100, 10_000]))]);
}

const invalidValues: Record<string, () => J> = {
  name: () => rng.pick<J>([
    '', ' ', 'a'.repeat(65), ' leading', '-dash', '.dot', '_under', 'has space', 'ünïcödé', '😀', 'fn\u0000', 'a/b',
    '..', '../x', 'tab\tname', 'new\nline', '\u202eevil', 'x\ud800', '00000000-0000-4000-8000-000000000000',
    'F35FC685-C85E-4F25-93CA-13B32B2DE5D8', 'ｆｕｌｌ', randomString(10) + '!', hugeString(),
  ]),
  runtime: () => rng.pick<J>([
    '', 'ruby', 'python2', 'node18', 'nodé', 'node ', ' node', 'NODE\u0000', 'pyth0n', '😀', 'deno', 'bun',
    'constructor', '__proto__', 'toString', 'hasOwnProperty', 'valueOf', 'python3.12', 'node.js ', hugeString(),
  ]),
  code: () => rng.pick<J>(['', ' ', '\n\t\r ', '\u0020\u0020']),
  handler: () => rng.pick<J>([
    '', ' ', 'not a name', '1abc', 'a.b.c', 'handler()', 'handler;', '😀', 'hand\u0000ler', 'x\ud800', '-x', 'a..b',
    '.handler', 'handler.', 'ハンドラ', hugeString() + '()', // (megabytes of plain "x" would be a valid name)
  ]),
  vcpu: () => rng.pick<J>([0, 9, -1, 100, 2 ** 31, -(2 ** 31), 1e308, new Raw('-0')]),
  memory_mb: () => rng.pick<J>([0, 64, 127, 4097, 1e6, -256, 1e308, new Raw('-0')]),
  timeout_seconds: () => rng.pick<J>([0, 901, -30, 86_400, 1e308, new Raw('-0')]),
  max_concurrency: () => rng.pick<J>([0, 1001, -1, 1e9, 1e308]),
  env_vars: () => rng.pick<J>([
    { 'A-B': 'x' }, { '1A': 'x' }, { '': 'x' }, { 'A B': 'x' }, { ÜNICODE: 'x' }, { 'A\u0000': 'x' }, { '😀': 'x' },
    { A: 1 }, { A: null }, { A: true }, { A: {} }, { A: ['x'] }, { A: 'ok', B: 2 },
    Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`V${i}`, 'x'])),
    Object.fromEntries(Array.from({ length: 20_000 }, (_, i) => [`V${i}`, String(i)])),
  ]),
};

/** Keys the API does not know: ignored, whatever their value (unless a pollution vector, see below). */
function unknownKey(): string {
  return rng.pick([
    'foo', 'extra', 'Name', 'NAME', 'name ', 'vcpu\u0000', 'id', 'version', 'state', 'created_at', 'updated_at',
    'vm_id', 'port', 'guest_ip', 'error', 'last_invoked_at', 'toString', 'hasOwnProperty', 'valueOf', 'ñ', '😀', '',
    '\u0000', 'env', 'runtime_version', randomString(8),
  ]);
}

// ---------------------------------------------------------------------------------------------------
// Requests

interface RawResponse {
  status: number;
  text: string;
  json: any;
  ms: number;
}

interface Case {
  label: string;
  method: string;
  path: string;
  body?: Buffer | string;
  /** undefined: no content-type header at all. */
  contentType?: string;
  /** 'fail': must be 4xx; 'ok': must be 2xx; 'any': anything below 500. */
  expect: 'fail' | 'ok' | 'any';
  check?: (response: RawResponse) => void | Promise<void>;
}

let fnvm: TestServer;
let agent: Agent;

function send(c: Pick<Case, 'method' | 'path' | 'body' | 'contentType'>, timeoutMs = 90_000): Promise<RawResponse> {
  const url = new URL(fnvm.url);
  const body = c.body === undefined ? undefined : Buffer.isBuffer(c.body) ? c.body : Buffer.from(c.body, 'utf8');
  const headers: Record<string, string | number> = {};
  if (c.contentType !== undefined) headers['content-type'] = c.contentType;
  if (body !== undefined) headers['content-length'] = body.length;
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: url.hostname, port: url.port, method: c.method, path: c.path, headers, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('error', reject);
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json: unknown;
        try {
          json = text ? JSON.parse(text) : undefined;
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode ?? 0, text, json, ms: Date.now() - started });
      });
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(body);
  });
}

// ---------------------------------------------------------------------------------------------------
// The reference functions

interface Ref {
  runtime: 'node' | 'python';
  id: string;
  name: string;
  body: Record<string, unknown>;
  item: any;
  logs: any[];
}

const refs: Ref[] = [];
const volatile = ['updated_at', 'last_invoked_at'];
const stable = (item: any) => Object.fromEntries(Object.entries(item).filter(([k]) => !volatile.includes(k)));

const refBodies = [
  {
    name: 'fuzz-ref-node', runtime: 'node', handler: 'handler', vcpu: 1, memory_mb: 256, timeout_seconds: 30,
    env_vars: { GREETING: 'hello' },
    code: "async function handler(event) { console.log('echo', typeof event); return { input: event, greeting: process.env.GREETING }; }",
  },
  {
    name: 'fuzz-ref-py', runtime: 'python', handler: 'handler', vcpu: 1, memory_mb: 256, timeout_seconds: 30,
    env_vars: { GREETING: 'hello' },
    code: "import os\n\ndef handler(event):\n    print('echo', type(event).__name__)\n    return {'input': event, 'greeting': os.environ.get('GREETING')}\n",
  },
] as const;

/** Ways to name a reference function in a path that must find it. */
function refPath(ref: Ref): string {
  return rng.weighted<string>([
    [4, ref.id],
    [3, ref.name],
    [1, pct(ref.name).replace(/-/g, '%2D')],
    [1, ref.id.replace(/-/g, '%2d')],
  ]);
}

/** Percent-encodes UTF-8 (lone surrogates become U+FFFD, where encodeURIComponent would throw). */
function pct(value: string): string {
  return [...Buffer.from(value, 'utf8')].map((b) => (/[A-Za-z0-9_.~-]/.test(String.fromCharCode(b)) ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase().padStart(2, '0')}`)).join('');
}

/** Ids that must not resolve to any function. */
function oddId(): string {
  const ref = rng.pick(refs);
  const candidate = rng.weighted<() => string>([
    [2, () => pct(randomString(30))],
    [1, () => pct('x'.repeat(rng.pick([101, 1000, 7000])))],
    [1, () => rng.pick(['..%2F', '..%2F..%2Fhealth', '%2e%2e', '%2e%2e%2f%2e%2e%2fv1%2Fhealth', '.', '%2F', '%00', '%0A', '%20'])],
    [1, () => rng.pick(['%', '%zz', '%E0%A4%A', '%ED%A0%80', '%FF%FE', '%C0%AF', '%F4%90%80%80', '%%32%65'])],
    [1, () => rng.pick(['\u00e9', '\u00ff\u00fe', 'caf\u00e9'])], // raw latin-1 bytes in the request line
    [2, () => pct(rng.pick([
      ref.name.replace('e', '\u0435'), // Cyrillic e
      ref.name.toUpperCase(),
      ref.name + '\u200b',
      '\u200b' + ref.name,
      ref.name.replace('-', '\u2010'),
      [...ref.name].map((c) => String.fromCharCode(c.charCodeAt(0) + 0xfee0)).join(''), // fullwidth
      ref.name + '\u0000',
      ref.name + ' ',
      ref.name.normalize('NFD') + '\u0301',
    ]))],
    [1, () => rng.pick([ref.id.toUpperCase(), ref.id.slice(0, -1), ref.id + '0', `{${ref.id}}`, ref.id.replace(/-/g, '')])],
    [1, () => ref.name + '%2F'],
    [1, () => '00000000-0000-4000-8000-000000000000'],
  ])();
  // Guard (DELETE uses these): never the exact name or id of a reference function, in any encoding.
  let decoded = candidate;
  try {
    decoded = decodeURIComponent(candidate);
  } catch {
    // malformed percent-encoding: cannot name anything
  }
  if (refs.some((r) => decoded === r.id || decoded === r.name || candidate === r.id || candidate === r.name)) return 'nope';
  return candidate;
}

function oddQuery(): string {
  return rng.pick([
    '', '?', '?limit=-1', '?limit=0', '?limit=1e9', '?limit=1e2', '?limit=abc', '?limit=1&limit=2', '?offset=NaN',
    '?offset=-0', '?offset=1.5', '?limit=%', '?limit=%FF', '?limit[]=1', '?limit=Infinity', '?limit=%205', '?limit=0x10',
    '?offset=9007199254740993', '?offset=99999999999999', '?limit=1001', '?limit=1000', '?limit=10&offset=1',
    '?limit=%D9%A3', '?limit=1&&&offset=', '?=&=', `?junk=${'a'.repeat(4000)}`, '?limit=5#frag', '?__proto__=1',
    '?constructor[prototype]=x', '?limit=+5', '?limit=05', '?offset=', '?limit=',
  ]);
}

/** Queries whose outcome is certain: their limit, or -1 for a 400. Others may go either way. */
const validLimits = new Map<string, number>([
  ['', 100], ['?', 100], ['?limit=1000', 1000], ['?limit=10&offset=1', 10], ['?limit=05', 5], ['?offset=', 100], ['?limit=', 100],
  ['?offset=99999999999999', 100],
  ...['?limit=-1', '?limit=0', '?limit=1e9', '?limit=1e2', '?limit=abc', '?limit=1&limit=2', '?offset=NaN', '?offset=-0', '?offset=1.5',
    '?limit=1001', '?limit=Infinity', '?limit=0x10', '?limit=+5', '?offset=9007199254740993', '?limit=%D9%A3'].map((q) => [q, -1] as [string, number]),
]);

// ---------------------------------------------------------------------------------------------------
// Bodies: mutations of a base definition, then of its text, then of its transport.

interface BodyPlan {
  pairs: Pairs | null;
  /** Replaces the object body (non-object bodies). */
  whole?: J;
  mustFail: boolean;
  notes: string[];
}

/** Mutations of a create/update body; each either makes it invalid (fail) or is harmless. */
function mutate(plan: BodyPlan, mode: 'create' | 'update', ref?: Ref): void {
  const kind = rng.weighted<string>([
    [5, 'wrongType'], [5, 'invalidValue'], [1.5, 'huge'], [mode === 'create' ? 2 : 0, 'missing'], [3, 'unknown'],
    [1.5, 'duplicate'], [1, 'pollute'], [1.5, 'rawLiteral'], [1, 'whole'], [0.7, 'deepField'],
    [mode === 'update' ? 0.3 : 0, 'badCode'],
  ]);
  const pairs = plan.pairs ?? [];
  // Replaces every occurrence: a duplicate left by an earlier mutation would otherwise come later and win.
  const set = (key: string, value: J) => {
    for (let i = pairs.findIndex(([k]) => k === key); i >= 0; i = pairs.findIndex(([k]) => k === key)) pairs.splice(i, 1);
    pairs.splice(rng.int(pairs.length + 1), 0, [key, value]);
  };
  plan.notes.push(kind);
  switch (kind) {
    case 'wrongType': {
      const field = rng.pick(fields);
      set(field, wrongType(field));
      plan.notes.push(field);
      plan.mustFail = true;
      break;
    }
    case 'invalidValue': {
      const field = rng.pick(fields);
      set(field, invalidValues[field]!());
      plan.notes.push(field);
      plan.mustFail = true;
      break;
    }
    case 'huge': {
      const field = rng.pick(['name', 'handler', 'runtime', 'env', 'unknown']);
      plan.notes.push(field);
      if (field === 'env') {
        // A huge env value is allowed: this needs another, invalid field to be a safe mutation.
        set('env_vars', { BIG: hugeString() });
        set('vcpu', invalidValues.vcpu!());
        plan.mustFail = true;
      } else if (field === 'unknown') {
        set(unknownKey() + '_big', hugeString());
      } else {
        const value = hugeString();
        set(field, value);
        // handler has no length limit: megabytes of "x" are a valid (if unloadable) handler name.
        if (field !== 'handler' || /[^\w$]/.test(value)) plan.mustFail = true;
      }
      break;
    }
    case 'missing': {
      const field = rng.pick(['name', 'runtime', 'code']);
      const i = pairs.findIndex(([k]) => k === field);
      if (i >= 0) pairs.splice(i, 1);
      plan.mustFail = true;
      break;
    }
    case 'unknown':
      for (let n = rng.between(1, 6); n > 0; n--) pairs.splice(rng.int(pairs.length + 1), 0, [unknownKey(), randomValue(0, true)]);
      break;
    case 'duplicate': {
      // JSON.parse keeps the last occurrence: either the invalid one (fail) or the original (harmless).
      const field = rng.pick(['name', 'runtime', 'handler', 'vcpu', 'memory_mb']);
      const bad = rng.chance(0.5) ? wrongType(field) : invalidValues[field]!();
      const current = pairs.find(([k]) => k === field);
      if (current && rng.chance(0.5)) {
        pairs.splice(pairs.indexOf(current), 0, [field, bad]);
      } else {
        pairs.push([field, bad]);
        plan.mustFail = true;
      }
      break;
    }
    case 'pollute':
      set(...rng.pick<[string, J]>([ // set: a later duplicate key would hide it
        ['__proto__', { vcpu: 8, polluted: true }],
        ['__proto__', null],
        ['constructor', { prototype: { polluted: true } }],
        ['env_vars', new Raw('{"__proto__":{"A":"x"}}')],
        ['polluter', new Raw('{"a":{"b":{"__proto__":{"polluted":true}}}}')],
      ]));
      plan.mustFail = true;
      break;
    case 'rawLiteral':
      set(rng.pick([...fields, 'foo']), new Raw(rng.pick([
        'NaN', 'Infinity', '-Infinity', 'undefined', "'single'", '01', '+1', '.5', '1.', '0x10', 'tru', 'nul', '"unterminated',
        '"bad \\x41 escape"', '"\\u12"', '"raw\nnewline"', '"tab\there"', '[1,2,]', '{"a":1,}', '{a:1}', "{'a':'b'}",
        '/*c*/1', '1 2', '"a" "b"', '--1', '1e', '"\\ud800\\', '[', ']', '{', '}', '',
      ])));
      plan.mustFail = true;
      break;
    case 'whole':
      plan.whole = rng.pick<J>([
        [], [pairsJsonValue(pairs)], 'a string', 123, 0, -1.5, true, false, null, new Raw('-0'), new Raw('['.repeat(10_000) + ']'.repeat(10_000)),
        [null], [[]], '{"name":"x"}',
      ]);
      plan.mustFail = true;
      break;
    case 'deepField': {
      const target = rng.pick([...fields, 'unknown']);
      plan.notes.push(target);
      if (target === 'unknown') set(unknownKey() + '_deep', deepNesting(deepDepth()));
      else {
        set(target, deepNesting(deepDepth()));
        plan.mustFail = true;
      }
      break;
    }
    case 'badCode':
      // Right type, but does not load: PUT must answer 400 and keep the old code.
      set('code', ref?.runtime === 'python' ? rng.pick(['def handler(:\n    pass', 'raise SystemExit(1)', 'def other(e):\n    return 1'])
        : rng.pick(['function handler( {', 'throw new Error("load")', 'exports.other = () => 1']));
      plan.mustFail = true;
      break;
  }
  plan.pairs = pairs;
}

function pairsJsonValue(pairs: Pairs): J {
  return new Raw(pairsJson(pairs));
}

interface Encoded {
  body?: Buffer | string;
  contentType?: string;
  mustFail: boolean;
  /** Bytes landed somewhere unknown: an invalid body may have become valid (say "__proto__" -> "_\ufffd_proto__"). */
  uncertain?: boolean;
  notes: string[];
}

const jsonTypes = ['application/json', 'application/json; charset=utf-8', 'Application/JSON', 'application/json;charset=UTF-8'];

/**
 * Text and transport mutations of a JSON text. `objectText`: the text is a JSON object or array
 * (so any proper prefix of it is malformed).
 */
function encode(text: string, objectText: boolean, options: { bytesInStrings?: boolean } = {}): Encoded {
  const kind = rng.weighted<string>([
    [10, 'plain'], [objectText ? 1.5 : 0, 'truncate'], [objectText ? 1 : 0, 'trailingComma'], [1, 'garbage'],
    [text.includes('"') ? 1 : 0, 'singleQuotes'], [0.7, 'bom'], [1, 'badBytes'], [0.5, 'emptyJson'],
    [1, 'textPlain'], [0.7, 'form'], [0.7, 'noType'], [0.3, 'otherType'], [0.2, 'oversize'],
  ]);
  const json = rng.pick(jsonTypes);
  switch (kind) {
    case 'plain':
      return { body: text, contentType: json, mustFail: false, notes: [] };
    case 'truncate':
      return { body: text.slice(0, rng.int(text.length)), contentType: json, mustFail: true, notes: ['truncated'] };
    case 'trailingComma': {
      const at = Math.max(text.lastIndexOf('}'), text.lastIndexOf(']'));
      return { body: text.slice(0, at) + ',' + text.slice(at), contentType: json, mustFail: true, notes: ['trailing comma'] };
    }
    case 'garbage': {
      const junk = rng.pick(['}', ']', 'x', ' {"a":1}', ',', '\u0000', 'null', '"', '\\']);
      const front = rng.chance(0.3);
      return { body: front ? junk + text : text + junk, contentType: json, mustFail: true, notes: [`garbage ${JSON.stringify(junk)}`] };
    }
    case 'singleQuotes':
      return { body: text.replace(/"/g, "'"), contentType: json, mustFail: true, notes: ['single quotes'] };
    case 'bom':
      return { body: '\ufeff' + text, contentType: json, mustFail: false, notes: ['BOM'] };
    case 'badBytes': {
      const bytes = Buffer.from(rng.pick([[0xff], [0xfe, 0xff], [0xc3, 0x28], [0xed, 0xa0, 0x80], [0xc0, 0xaf], [0xf8, 0x88, 0x80, 0x80, 0x80], [0x80], [0xe2, 0x82]]));
      if (options.bytesInStrings === false) {
        // Outside any string: the JSON is broken. (Inside one they would decode to U+FFFD and could turn a
        // harmless PUT into a real change of the reference function.)
        const body = rng.chance(0.5) ? Buffer.concat([bytes, Buffer.from(text)]) : Buffer.concat([Buffer.from(text), bytes]);
        return { body, contentType: json, mustFail: true, notes: ['invalid UTF-8 outside strings'] };
      }
      const at = rng.int(text.length + 1);
      // Outside a string the bytes break the JSON; inside one they decode to U+FFFD. Either may happen here.
      return { body: Buffer.concat([Buffer.from(text.slice(0, at)), bytes, Buffer.from(text.slice(at))]), contentType: json, mustFail: false, uncertain: true, notes: ['invalid UTF-8'] };
    }
    case 'emptyJson':
      return { body: rng.pick(['', ' ', '\n']), contentType: json, mustFail: true, notes: ['empty body'] };
    case 'textPlain':
      return { body: text, contentType: rng.pick(['text/plain', 'text/plain; charset=utf-8']), mustFail: true, notes: ['text/plain'] };
    case 'form':
      return { body: rng.chance(0.5) ? 'name=x&runtime=node&code=y' : text, contentType: 'application/x-www-form-urlencoded', mustFail: true, notes: ['form'] };
    case 'noType':
      return { body: Buffer.from(text), mustFail: true, notes: ['no content-type'] };
    case 'otherType':
      return {
        body: text,
        contentType: rng.pick(['multipart/form-data; boundary=x', 'application/octet-stream', 'application/vnd.api+json', 'application/xml', 'json', '*/*', 'application/json-patch+json']),
        mustFail: true,
        notes: ['other content-type'],
      };
    default:
      return { body: '{"x":"' + 'y'.repeat(7 * 1024 * 1024) + '"}', contentType: json, mustFail: true, notes: ['over 6 MB'] };
  }
}

// ---------------------------------------------------------------------------------------------------
// Cases per endpoint

const echoCode = {
  node: 'async function handler(event) { return { input: event }; }',
  python: "def handler(event):\n    return {'input': event}",
};
let createdOk = 0;
const maxValidCreates = 3;
const createdIds: string[] = [];

function createCase(n: number): Case {
  const runtime = rng.pick(['node', 'python', 'nodejs', 'py', 'NODE', 'Python3'] as const);
  const plan: BodyPlan = {
    pairs: [
      ['name', `fuzz-tmp-${n}`],
      ['runtime', runtime],
      ['code', runtime.toLowerCase().startsWith('p') ? echoCode.python : echoCode.node],
    ],
    mustFail: false,
    notes: [],
  };
  if (rng.chance(0.5)) plan.pairs!.push(['memory_mb', rng.pick([128, 256])]);
  for (let m = rng.weighted([[6, 1], [3, 2], [1, 3]] as const); m > 0; m--) mutate(plan, 'create');
  // Creating deploys a VM: only a few valid ones per run.
  if (!plan.mustFail && createdOk >= maxValidCreates) forceInvalid(plan);
  const text = plan.whole !== undefined ? toJson(plan.whole) : pairsJson(plan.pairs!);
  const encoded = encode(text, plan.whole === undefined || Array.isArray(plan.whole));
  const mustFail = (plan.mustFail && !encoded.uncertain) || encoded.mustFail;
  return {
    label: `POST /v1/functions [${[...plan.notes, ...encoded.notes].join(', ')}]`,
    method: 'POST',
    path: rng.chance(0.9) ? '/v1/functions' : '/v1/functions' + oddQuery(),
    body: encoded.body,
    contentType: encoded.contentType,
    expect: mustFail ? 'fail' : 'any',
    async check(response) {
      if (response.status < 300) {
        assert.match(response.json?.id ?? '', /^[0-9a-f-]{36}$/, 'a created function has an id');
        createdOk++;
        createdIds.push(response.json.id);
        // Delete it right away (often mid-deploy): the list must hold only the reference functions.
        const deleted = await send({ method: 'DELETE', path: `/v1/functions/${response.json.id}` });
        assert.equal(deleted.status, 200, deleted.text);
      }
    },
  };
}

function forceInvalid(plan: BodyPlan): void {
  const field = rng.pick(['vcpu', 'memory_mb', 'name', 'handler']);
  plan.pairs = [...(plan.pairs ?? []), [field, invalidValues[field]!()]];
  plan.mustFail = true;
  plan.notes.push(`forced invalid ${field}`);
}

/** A PUT to a reference function that must fail, or that changes nothing (200, same version). */
function updateCase(): Case {
  const ref = rng.pick(refs);
  const current = ref.item;
  // A harmless base: some of the function's own current values (runtime possibly as an alias).
  const pairs: Pairs = [];
  for (const field of fields) {
    if (!rng.chance(0.3)) continue;
    if (field === 'runtime') pairs.push(['runtime', rng.pick(ref.runtime === 'node' ? ['node', 'nodejs', 'JS', 'Node.js'] : ['python', 'py', 'PYTHON3', 'python3.11'])]);
    else pairs.push([field, current[field]]);
  }
  const plan: BodyPlan = { pairs, mustFail: false, notes: [] };
  if (rng.chance(0.15)) {
    // Harmless: the function's own values plus fields the API ignores.
    plan.notes.push('harmless');
    for (let n = rng.between(1, 4); n > 0; n--) pairs.splice(rng.int(pairs.length + 1), 0, [unknownKey(), randomValue(0, rng.chance(0.3))]);
  } else {
    for (let m = rng.weighted([[6, 1], [3, 2], [1, 3]] as const); m > 0; m--) mutate(plan, 'update', ref);
    if (!plan.mustFail) forceInvalid(plan);
  }
  const text = plan.whole !== undefined ? toJson(plan.whole) : pairsJson(plan.pairs!);
  const encoded = encode(text, plan.whole === undefined || Array.isArray(plan.whole), { bytesInStrings: false });
  const mustFail = (plan.mustFail && !encoded.uncertain) || encoded.mustFail;
  return {
    label: `PUT ${ref.name} [${[...plan.notes, ...encoded.notes].join(', ')}]`,
    method: 'PUT',
    path: `/v1/functions/${refPath(ref)}`,
    body: encoded.body,
    contentType: encoded.contentType,
    expect: mustFail ? 'fail' : 'any',
    check(response) {
      if (response.status < 300) {
        assert.deepEqual(stable(response.json.item), stable(ref.item), 'a harmless PUT changes nothing');
      }
    },
  };
}

function invokeCase(): Case {
  const toRef = rng.chance(0.88);
  const ref = rng.pick(refs);
  const path = toRef ? `/v1/functions/${refPath(ref)}/invoke` : `/v1/functions/${oddId()}/invoke`;
  const shape = rng.weighted<string>([
    [8, 'event'], [3, 'bare'], [2, 'eventExtra'], [1.5, 'nonObject'], [1, 'null'], [1, 'noBody'], [1.5, 'deep'],
    [1, 'huge'], [1, 'pollute'],
  ]);
  let text: string;
  let objectText = true;
  let mustFail = false;
  let expectEvent: 'parse' | 'empty' | 'none' = 'parse';
  switch (shape) {
    case 'event':
      text = toJson({ event: randomValue(0, false) });
      break;
    case 'bare': {
      const value = randomValue(1, false);
      const obj = value !== null && typeof value === 'object' && !Array.isArray(value) && !(value instanceof Raw) ? value : { value };
      delete (obj as Record<string, J>).event;
      text = toJson(obj);
      break;
    }
    case 'eventExtra':
      text = toJson({ [unknownKey()]: randomValue(1), event: randomValue(0), [unknownKey() + '2']: randomValue(1) });
      break;
    case 'nonObject': {
      const value = rng.pick<J>([[], [1, 2], 'event', 42, true, false, new Raw('-0'), [{ event: {} }], '{}']);
      text = toJson(value);
      objectText = Array.isArray(value);
      mustFail = true;
      expectEvent = 'none';
      break;
    }
    case 'null':
      text = 'null';
      objectText = false;
      expectEvent = 'empty';
      break;
    case 'deep':
      text = toJson(rng.chance(0.7) ? { event: deepNesting(deepDepth()) } : { a: deepNesting(deepDepth()) });
      break;
    case 'huge':
      text = toJson({ event: rng.chance(0.5) ? hugeString() : { big: hugeString(), n: 1 } });
      break;
    case 'pollute':
      text = rng.pick(['{"event":{"__proto__":{"polluted":true}}}', '{"__proto__":{"event":1}}', '{"event":{"constructor":{"prototype":{"x":1}}}}']);
      mustFail = true;
      expectEvent = 'none';
      break;
    default:
      return finishInvoke(ref, toRef, { method: 'POST', path, expect: toRef ? 'ok' : 'fail', label: `invoke ${path} [no body]` }, 'empty');
  }
  if (!mustFail && expectEvent === 'parse') {
    const parsed = JSON.parse(text);
    // The API refuses events nested deeper than 512 levels (src/api/functions-routes.ts).
    if (valueDepth('event' in parsed ? parsed.event : parsed) > 512) mustFail = true;
  }
  const encoded = encode(text, objectText);
  return finishInvoke(ref, toRef, {
    method: 'POST',
    path,
    body: encoded.body,
    contentType: encoded.contentType,
    expect: !toRef || (mustFail && !encoded.uncertain) || encoded.mustFail ? 'fail' : encoded.notes.length ? 'any' : 'ok',
    label: `invoke ${path.slice(0, 80)} [${[shape, ...encoded.notes].join(', ')}]`,
  }, encoded.notes.length ? 'none' : expectEvent);
}

function finishInvoke(ref: Ref, toRef: boolean, c: Omit<Case, 'check'>, expectEvent: 'parse' | 'empty' | 'none'): Case {
  return {
    ...c,
    check(response) {
      if (response.status >= 300) return;
      assert.ok(toRef, 'only the reference functions can be invoked');
      const result = response.json;
      assert.ok(result && typeof result === 'object', 'invoke answers JSON');
      assert.notEqual(result.status, 'timeout', `an echo never times out: ${response.text.slice(0, 500)}`);
      assert.ok(['success', 'error'].includes(result.status), `status ${result.status}`);
      invokeStats[result.status === 'success' ? 'success' : `error ${result.error?.type}`] =
        (invokeStats[result.status === 'success' ? 'success' : `error ${result.error?.type}`] ?? 0) + 1;
      if (result.status !== 'success') {
        // An echo fails only when the agent cannot carry the value (too large or too deep for the runtime).
        assert.match(String(result.error?.type), /TooLarge|Recursion|Serializ|Depth|RangeError/, response.text.slice(0, 500));
        return;
      }
      assert.equal(result.response.greeting, 'hello');
      if (expectEvent === 'empty') return assert.deepEqual(result.response.input, {}, 'no body (or null) means {}');
      if (expectEvent === 'none' || typeof c.body !== 'string' || jsonDepth(c.body) > 500) return;
      const sent = JSON.parse(c.body);
      const event = sent === null ? {} : 'event' in sent ? sent.event : sent;
      // What the host forwards: JSON.stringify turns -0 into 0 and 1e400 (Infinity) into null.
      assert.deepEqual(result.response.input, JSON.parse(JSON.stringify(event) ?? 'null'), `${ref.name} echoes the event`);
    },
  };
}

const invokeStats: Record<string, number> = {};

function getCase(): Case {
  if (rng.chance(0.6)) {
    const ref = rng.pick(refs);
    return {
      label: `GET ${ref.name}`,
      method: 'GET',
      path: `/v1/functions/${refPath(ref)}${rng.chance(0.3) ? oddQuery() : ''}`,
      expect: 'ok',
      check(response) {
        assert.deepEqual(stable(response.json.item), stable(ref.item));
      },
    };
  }
  const id = oddId();
  return { label: `GET /v1/functions/${id.slice(0, 60)}`, method: 'GET', path: `/v1/functions/${id}`, expect: 'fail' };
}

function deleteCase(): Case {
  const id = oddId();
  const withBody = rng.chance(0.4);
  const encoded = withBody ? encode(toJson(randomValue()), false) : {};
  return {
    label: `DELETE /v1/functions/${id.slice(0, 60)}`,
    method: 'DELETE',
    path: `/v1/functions/${id}${rng.chance(0.2) ? oddQuery() : ''}`,
    ...encoded,
    expect: 'fail',
  };
}

function logsCase(): Case {
  const toRef = rng.chance(0.85);
  const ref = rng.pick(refs);
  const query = oddQuery();
  const limit = validLimits.get(query);
  return {
    label: `GET logs ${query.slice(0, 60)}`,
    method: 'GET',
    path: `/v1/functions/${toRef ? refPath(ref) : oddId()}/logs${query}`,
    expect: !toRef ? 'fail' : limit === undefined ? 'any' : limit < 0 ? 'fail' : 'ok',
    check(response) {
      if (response.status >= 300) return;
      assert.ok(Array.isArray(response.json.items));
      if (limit !== undefined) assert.ok(response.json.items.length <= limit);
      for (const item of response.json.items) assert.equal(item.function_id, ref.id);
    },
  };
}

function listCase(): Case {
  const withBody = rng.chance(0.3);
  return {
    label: 'GET /v1/functions',
    method: 'GET',
    path: '/v1/functions' + (rng.chance(0.5) ? oddQuery() : ''),
    ...(withBody ? { body: '{"broken": ', contentType: 'application/json' } : {}),
    expect: 'ok',
    check(response) {
      const ids = response.json.items.map((item: any) => item.id);
      for (const ref of refs) assert.ok(ids.includes(ref.id));
    },
  };
}

function healthCase(): Case {
  return { label: 'GET /v1/health', method: 'GET', path: '/v1/health' + (rng.chance(0.5) ? oddQuery() : ''), expect: 'ok' };
}

function oddRouteCase(): Case {
  const ref = rng.pick(refs);
  const [method, path] = rng.pick<[string, string]>([
    ['PATCH', `/v1/functions/${ref.id}`],
    ['POST', `/v1/functions/${ref.id}`],
    ['PUT', '/v1/functions'],
    ['DELETE', '/v1/functions'],
    ['GET', `/v1/functions/${ref.id}/invoke`],
    ['POST', `/v1/functions/${ref.id}/logs`],
    ['POST', `/v1/functions/${ref.id}/invoke/extra`],
    ['GET', '/v1/functions/'],
    ['GET', '/v1//functions'],
    ['GET', `/v1/functions/${ref.id}//logs`],
    ['GET', '/v1/function'],
    ['POST', '/v1/functions/%2e%2e/health'],
    ['GET', '/v1/health/' + 'x'.repeat(3000)],
  ]);
  return { label: `${method} ${path.slice(0, 80)}`, method, path, body: method === 'GET' ? undefined : '{}', contentType: 'application/json', expect: 'fail' };
}

const endpoints: Array<readonly [number, string, (n: number) => Case]> = [
  [22, 'POST /v1/functions', createCase],
  [18, 'PUT /v1/functions/{id}', updateCase],
  [25, 'POST /v1/functions/{id}/invoke', invokeCase],
  [8, 'GET /v1/functions/{id}', getCase],
  [5, 'DELETE /v1/functions/{id}', deleteCase],
  [12, 'GET /v1/functions/{id}/logs', logsCase],
  [5, 'GET /v1/functions', listCase],
  [3, 'GET /v1/health', healthCase],
  [2, 'no such route', oddRouteCase],
];

function nextCase(n: number): Case & { endpoint: string } {
  const [endpoint, make] = rng.weighted(endpoints.map(([weight, name, make]) => [weight, [name, make]] as const));
  return { ...make(n), endpoint };
}

// ---------------------------------------------------------------------------------------------------

before(async () => {
  fnvm = await startTestServer({ retention: 100_000 });
  // One connection per request: after a client error (e.g. raw bytes in the URL) Fastify destroys the
  // socket without `connection: close`, which a keep-alive client would race to reuse.
  agent = new Agent({ keepAlive: false });
});

after(async () => {
  agent?.destroy();
  await fnvm?.stop();
  // A function deleted while its code was still loading (the valid creates above) may stop its VM a few
  // seconds after close() returns (a server shutdown race, not what this test is about): allow for it.
  const deadline = Date.now() + 20_000;
  while (liveProcessCount() > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 200));
  assert.equal(liveProcessCount(), 0, 'no QEMU process outlives the server');
});

async function expectIntact(when: string): Promise<void> {
  for (const ref of refs) {
    const got = await send({ method: 'GET', path: `/v1/functions/${ref.id}` });
    assert.equal(got.status, 200, `${when}: GET ${ref.name}`);
    assert.deepEqual(stable(got.json.item), stable(ref.item), `${when}: ${ref.name} unchanged`);
  }
}

describe(`API fuzz (seed ${seed})`, () => {
  test('deploy a node and a python reference function and invoke them', async () => {
    for (const body of refBodies) {
      const created = await fnvm.api('/v1/functions', { method: 'POST', body });
      assert.equal(created.status, 200, JSON.stringify(created.body));
      const item = await waitForState(fnvm, created.body.id);
      assert.equal(item.state, 'ready', item.error);
      refs.push({ runtime: body.runtime, id: item.id, name: item.name, body, item, logs: [] });
    }
    for (const ref of refs) {
      for (let i = 0; i < 3; i++) {
        const event = { i, text: 'héllo 😀', nested: { list: [1, 2.5, null, true] } };
        const invoked = await fnvm.api(`/v1/functions/${ref.id}/invoke`, { method: 'POST', body: { event } });
        assert.equal(invoked.status, 200);
        assert.equal(invoked.body.status, 'success', JSON.stringify(invoked.body.error));
        assert.deepEqual(invoked.body.response, { input: event, greeting: 'hello' });
      }
      ref.item = (await fnvm.api(`/v1/functions/${ref.id}`)).body.item;
      ref.logs = (await fnvm.api(`/v1/functions/${ref.id}/logs?limit=1000`)).body.items;
      assert.equal(ref.logs.length, 3);
    }
  });

  test('randomised bad input never gets a 500, and every 4xx is {"error": string}', { timeout: 300_000 }, async () => {
    assert.equal(refs.length, 2, 'reference functions deployed');
    const started = Date.now();
    const statuses: Record<string, Record<number, number>> = {};
    let sent = 0;
    let previous = '';
    for (; sent < requestCount; sent++) {
      if (Date.now() - started > budgetMs) break;
      const c = nextCase(sent);
      const preview = c.body === undefined ? 'no body' : `${c.contentType ?? 'no content-type'} body ${JSON.stringify(c.body.slice(0, 200).toString())}`;
      const where = `request ${sent} (seed ${seed}): ${c.label} ${c.path.slice(0, 100)} (${preview})`;
      let response: RawResponse;
      try {
        response = await send(c);
      } catch (error) {
        assert.fail(`${where}: no response: ${(error as Error).message} (previous: ${previous})`);
      }
      previous = `${c.label} -> ${response.status} ${response.text.slice(0, 100)}`;
      const counts = (statuses[c.endpoint] ??= {});
      counts[response.status] = (counts[response.status] ?? 0) + 1;
      assert.ok(response.status < 500, `${where}: ${response.status} ${response.text.slice(0, 500)}`);
      if (response.status >= 400) {
        assert.equal(typeof response.json?.error, 'string', `${where}: a ${response.status} body is {"error": string}: ${response.text.slice(0, 300)}`);
      }
      if (c.expect === 'fail') assert.ok(response.status >= 400, `${where}: must be rejected, got ${response.status} ${response.text.slice(0, 300)}`);
      if (c.expect === 'ok') assert.ok(response.status < 300, `${where}: must succeed, got ${response.status} ${response.text.slice(0, 300)}`);
      try {
        await c.check?.(response);
      } catch (error) {
        (error as Error).message = `${where}: ${(error as Error).message}`;
        throw error;
      }
      if ((sent + 1) % 50 === 0) {
        const health = await send({ method: 'GET', path: '/v1/health' });
        assert.equal(health.status, 200, `health after ${sent + 1} requests`);
        await expectIntact(`after ${sent + 1} requests`);
      }
    }
    const seconds = ((Date.now() - started) / 1000).toFixed(1);
    console.log(`fuzz-api: ${sent} requests in ${seconds} s; invocations ${JSON.stringify(invokeStats)}; valid creates ${createdOk}`);
    for (const [endpoint, counts] of Object.entries(statuses)) console.log(`fuzz-api: ${endpoint}: ${JSON.stringify(counts)}`);
    assert.ok(sent >= Math.min(requestCount, 100), `at least 100 requests ran (${sent})`);
  });

  test('the reference functions are unchanged, still work and keep their history', async () => {
    assert.equal(refs.length, 2);
    await expectIntact('at the end');
    for (const ref of refs) {
      const event = { after: 'fuzz', ok: true };
      const invoked = await send({ method: 'POST', path: `/v1/functions/${ref.name}/invoke`, body: JSON.stringify({ event }), contentType: 'application/json' });
      assert.equal(invoked.status, 200, invoked.text);
      assert.equal(invoked.json.status, 'success', invoked.text);
      assert.deepEqual(invoked.json.response, { input: event, greeting: 'hello' });
      assert.equal(invoked.json.version, ref.item.version);
      const logs = await send({ method: 'GET', path: `/v1/functions/${ref.id}/logs?limit=1000` });
      assert.equal(logs.status, 200);
      const byId = new Map(logs.json.items.map((item: any) => [item.id, item]));
      for (const earlier of ref.logs) assert.deepEqual(byId.get(earlier.id), earlier, `${ref.name}: log ${earlier.id} kept`);
      assert.equal(logs.json.items[0].request_id, invoked.json.request_id, 'newest first');
    }
    const list = await send({ method: 'GET', path: '/v1/functions' });
    assert.deepEqual(list.json.items.map((item: any) => item.id).sort(), refs.map((ref) => ref.id).sort(), 'only the reference functions remain');
    for (const id of createdIds) assert.equal((await send({ method: 'GET', path: `/v1/functions/${id}` })).status, 404);
  });

  test('what is stored survives a restart unchanged', { timeout: 180_000 }, async () => {
    assert.equal(refs.length, 2);
    const before = new Map<string, { item: any; logs: any[] }>();
    for (const ref of refs) {
      const item = (await send({ method: 'GET', path: `/v1/functions/${ref.id}` })).json.item;
      const logs = (await send({ method: 'GET', path: `/v1/functions/${ref.id}/logs?limit=1000` })).json.items;
      before.set(ref.id, { item, logs });
    }
    // GET answers from memory; a restart reads the definitions back from the database.
    await fnvm.stop({ keepData: true });
    fnvm = await startTestServer({ dataDir: fnvm.dataDir, retention: 100_000 });
    const list = await send({ method: 'GET', path: '/v1/functions' });
    assert.deepEqual(list.json.items.map((item: any) => item.id).sort(), refs.map((ref) => ref.id).sort());
    const definition = (item: any) => {
      // What the new VM measured (init_ms) and where it runs are the restart's; the definition is the user's.
      const { vm_id: _vm, guest_ip: _ip, state: _state, updated_at: _updated, init_ms: _init, ...rest } = item;
      return rest;
    };
    for (const ref of refs) {
      const item = await waitForState(fnvm, ref.id);
      assert.equal(item.state, 'ready', item.error);
      assert.deepEqual(definition(item), definition(before.get(ref.id)!.item), `${ref.name}: stored definition`);
      const logs = (await send({ method: 'GET', path: `/v1/functions/${ref.id}/logs?limit=1000` })).json.items;
      assert.deepEqual(logs, before.get(ref.id)!.logs, `${ref.name}: stored history`);
      const invoked = await send({ method: 'POST', path: `/v1/functions/${ref.id}/invoke`, body: '{"event":{"restarted":true}}', contentType: 'application/json' });
      assert.deepEqual(invoked.json.response, { input: { restarted: true }, greeting: 'hello' }, invoked.text);
    }
  });
});
