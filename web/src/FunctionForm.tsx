// The create / edit form: code editor or a zip (on create), runtime (with starter templates), handler, resources,
// env vars. A packaged function's page edits its settings here and its package in PackageView.
// Ctrl/Cmd+S or Ctrl/Cmd+Enter anywhere in the form submits it.
import { useEffect, useRef, useState, type FormEvent, type KeyboardEvent, type ReactNode } from 'react';
import { defaultPackageHandler, type FunctionInput, type FunctionSettings, type Runtime } from './api';
import { CodeEditor } from './CodeEditor';
import type { Upload } from './upload';
import { UploadStatus } from './UploadStatus';
import { ErrorBox } from './ui';
import { zipProblem } from './zip-file';
import { ZipPicker } from './ZipPicker';

export const starters: Record<Runtime, string> = {
  node: `// Runs for every invocation. \`event\` is the JSON you invoke with; return any JSON value.
async function handler(event) {
  const name = event.name ?? 'World';
  console.log(\`greeting \${name}\`);
  return { message: \`Hello, \${name}!\`, input: event };
}
`,
  python: `# Runs for every invocation. \`event\` is the JSON you invoke with (a dict); return any JSON value.
def handler(event):
    name = event.get('name', 'World')
    print(f'greeting {name}')
    return {'message': f'Hello, {name}!', 'input': event}
`,
};

export const newFunction: FunctionInput = {
  name: '',
  runtime: 'node',
  code: starters.node,
  handler: 'handler',
  vcpu: 1,
  memory_mb: 256,
  timeout_seconds: 30,
  env_vars: {},
};

/** Where a function's source comes from: the editor, a zip being uploaded, or (editing) the package it has. */
type Source = 'code' | 'zip' | 'package';

/** What the form sends. A zip's handler may be '' (the server then takes the runtime's default). */
export type Submission =
  | { source: 'code'; input: FunctionInput }
  | { source: 'zip'; settings: FunctionSettings; file: File }
  | { source: 'package'; settings: FunctionSettings };

/** What the inputs hold: numbers as typed, env vars as ordered rows. */
interface Values {
  source: Source;
  name: string;
  runtime: Runtime;
  code: string;
  handler: string;
  vcpu: string;
  memory_mb: string;
  timeout_seconds: string;
  env: Array<{ key: string; value: string }>;
}

const toValues = (input: FunctionInput, source: Source): Values => ({
  source,
  name: input.name,
  runtime: input.runtime,
  code: input.code,
  handler: input.handler,
  vcpu: String(input.vcpu),
  memory_mb: String(input.memory_mb),
  timeout_seconds: String(input.timeout_seconds),
  env: Object.entries(input.env_vars).map(([key, value]) => ({ key, value })),
});

function toSubmission(values: Values, file: File | null): Submission | string {
  const env_vars: Record<string, string> = {};
  for (const { key, value } of values.env) {
    if (key.trim() === '' && value === '') continue;
    if (key.trim() === '') return 'Every environment variable needs a name.';
    if (key.trim() in env_vars) return `Environment variable ${key.trim()} is set twice.`;
    env_vars[key.trim()] = value;
  }
  const integer = (text: string, label: string): number | string =>
    /^\s*\d+\s*$/.test(text) ? Number(text) : `${label} must be a whole number.`;
  const vcpu = integer(values.vcpu, 'vCPU');
  const memory = integer(values.memory_mb, 'Memory');
  const timeout = integer(values.timeout_seconds, 'Timeout');
  for (const n of [vcpu, memory, timeout]) if (typeof n === 'string') return n;
  const settings: FunctionSettings = {
    name: values.name.trim(),
    runtime: values.runtime,
    handler: values.handler.trim(),
    vcpu: vcpu as number,
    memory_mb: memory as number,
    timeout_seconds: timeout as number,
    env_vars,
  };
  if (values.source === 'code') return { source: 'code', input: { ...settings, code: values.code } };
  if (values.source === 'package') return { source: 'package', settings };
  if (!file) return 'Choose a zip file (or drop one on the box).';
  return zipProblem(file) ?? { source: 'zip', settings, file };
}

/** The code's default handler and a package's are different names: switching source switches an untouched one. */
const handlerFor = (source: Source, handler: string): string =>
  source === 'zip' && handler === newFunction.handler ? '' : source === 'code' && handler === '' ? newFunction.handler : handler;

const same = (a: Values, b: Values) => JSON.stringify(a) === JSON.stringify(b);

export function FunctionForm(props: {
  mode: 'create' | 'edit';
  initial: FunctionInput;
  /** Editing a packaged function: no code editor (its package has its own card); the settings only. */
  packaged?: boolean;
  /** Throws to show an error (an API 400 message, for example); `report` tells how a zip's upload goes. */
  onSubmit: (submission: Submission, report: (upload: Upload) => void) => Promise<void>;
  submitLabel: string;
  /** Shown next to the button: "Saved", the deploy state... */
  status?: ReactNode;
}) {
  const initialSource: Source = props.packaged ? 'package' : 'code';
  const initial = toValues(props.initial, initialSource);
  const [values, setValues] = useState<Values>(initial);
  const [file, setFile] = useState<File | null>(null);
  const [upload, setUpload] = useState<Upload | null>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<Error | string | null>(null);
  const [saved, setSaved] = useState(false);
  const previous = useRef(initial);

  // The record changed under us (a save, or someone else's update): follow it unless there are unsaved edits.
  useEffect(() => {
    const next = toValues(props.initial, initialSource);
    if (same(next, previous.current)) return;
    setValues((current) => (same(current, previous.current) ? next : current));
    previous.current = next;
  }, [props.initial, initialSource]);

  const dirty = !same(values, previous.current);
  const set = <K extends keyof Values>(key: K, value: Values[K]) => {
    setSaved(false);
    setValues((current) => ({ ...current, [key]: value }));
  };
  const pristineCode = values.code.trim() === '' || Object.values(starters).includes(values.code);

  // A new runtime brings its starter, unless that would throw away code someone wrote: then it is offered.
  const [offer, setOffer] = useState<Runtime | null>(null);
  const changeRuntime = (runtime: Runtime) => {
    setSaved(false);
    setOffer(pristineCode ? null : runtime);
    setValues((current) => ({ ...current, runtime, code: pristineCode ? starters[runtime] : current.code }));
  };

  const changeSource = (source: Source) => {
    setError(null);
    setValues((current) => ({ ...current, source, handler: handlerFor(source, current.handler) }));
  };

  const submit = async (event?: FormEvent) => {
    event?.preventDefault();
    if (busy) return;
    const submission = toSubmission(values, file);
    if (typeof submission === 'string') {
      setError(submission);
      return;
    }
    setBusy(true);
    setError(null);
    try {
      await props.onSubmit(submission, setUpload);
      setSaved(true);
    } catch (caught) {
      setError(caught as Error);
    } finally {
      setBusy(false);
      setUpload(null);
    }
  };

  const shortcut = (event: KeyboardEvent) => {
    if ((event.ctrlKey || event.metaKey) && (event.key === 's' || event.key === 'S' || event.key === 'Enter')) {
      event.preventDefault();
      event.stopPropagation();
      void submit();
    }
  };

  const envRow = (index: number, patch: Partial<{ key: string; value: string }>) =>
    set('env', values.env.map((row, i) => (i === index ? { ...row, ...patch } : row)));

  return (
    <form className="function-form" noValidate onSubmit={submit} onKeyDownCapture={shortcut} aria-label={props.mode === 'create' ? 'New function' : 'Edit function'}>
      <div className="fields fields-basic">
        <label>
          Name
          <input value={values.name} onChange={(e) => set('name', e.target.value)} required maxLength={64}
            pattern="[A-Za-z0-9][A-Za-z0-9_.\-]*" placeholder="hello-world" autoComplete="off" spellCheck={false} />
        </label>
        <label>
          Runtime
          <select aria-label="Runtime" value={values.runtime} onChange={(e) => changeRuntime(e.target.value as Runtime)} disabled={props.mode === 'edit'}
            title={props.mode === 'edit' ? 'The runtime is fixed once a function exists' : undefined}>
            <option value="node">Node.js</option>
            <option value="python">Python</option>
          </select>
        </label>
        <label>
          Handler
          <input value={values.handler} onChange={(e) => set('handler', e.target.value)} required={values.source !== 'zip'} spellCheck={false}
            placeholder={values.source === 'code' ? newFunction.handler : defaultPackageHandler(values.runtime)}
            title={values.source === 'code' ? 'The function to call' : 'file.function: the file of the package (no extension) and its export'} />
        </label>
      </div>
      {props.mode === 'create' && (
        <div className="source-choice" role="radiogroup" aria-label="Source">
          <label className={values.source === 'code' ? 'checked' : ''}>
            <input type="radio" name="source" value="code" checked={values.source === 'code'} onChange={() => changeSource('code')} />
            Write code
          </label>
          <label className={values.source === 'zip' ? 'checked' : ''}>
            <input type="radio" name="source" value="zip" checked={values.source === 'zip'} onChange={() => changeSource('zip')} />
            Upload a zip
          </label>
        </div>
      )}
      {offer === values.runtime && !pristineCode && values.source === 'code' && (
        <p className="hint">
          Your code was kept.{' '}
          <button type="button" className="link" onClick={() => { set('code', starters[values.runtime]); setOffer(null); }}>
            Replace it with the {values.runtime === 'node' ? 'Node.js' : 'Python'} starter
          </button>
        </p>
      )}
      {values.source === 'code' && (
        <>
          <div className="editor-label">
            <span>Code</span>
            <span className="muted">{values.runtime === 'node' ? 'JavaScript' : 'Python'} · Ctrl/⌘+S to {props.mode === 'create' ? 'create' : 'save'}</span>
          </div>
          <CodeEditor value={values.code} onChange={(code) => set('code', code)} language={values.runtime === 'node' ? 'javascript' : 'python'}
            label="Code" height="clamp(220px, 42vh, 480px)" testId="code-editor" />
        </>
      )}
      {values.source === 'zip' && (
        <div className="zip-source">
          <ZipPicker file={file} onChange={(chosen) => { setFile(chosen); setError(null); }} disabled={busy} label="Zip file" testId="create-drop-zone" />
          <p className="muted">
            The zip holds the function's files at its root (its <code>node_modules</code> or vendored Python packages too); the handler names a
            file without its extension and its function, such as <code>{defaultPackageHandler(values.runtime)}</code> or <code>src/app.handler</code>.
          </p>
        </div>
      )}
      <div className="fields fields-resources">
        <label>
          vCPU
          <input type="number" min={1} max={8} value={values.vcpu} onChange={(e) => set('vcpu', e.target.value)} required />
        </label>
        <label>
          Memory (MB)
          <input type="number" min={128} max={4096} value={values.memory_mb} onChange={(e) => set('memory_mb', e.target.value)} required />
        </label>
        <label>
          Timeout (s)
          <input type="number" min={1} max={900} value={values.timeout_seconds} onChange={(e) => set('timeout_seconds', e.target.value)} required />
        </label>
      </div>
      <fieldset className="env">
        <legend>Environment variables</legend>
        {values.env.length === 0 && <p className="muted">None.</p>}
        {values.env.map((row, index) => (
          <div className="env-row" key={index}>
            <input aria-label={`Variable ${index + 1} name`} placeholder="NAME" value={row.key} spellCheck={false}
              onChange={(e) => envRow(index, { key: e.target.value })} />
            <input aria-label={`Variable ${index + 1} value`} placeholder="value" value={row.value} spellCheck={false}
              onChange={(e) => envRow(index, { value: e.target.value })} />
            <button type="button" className="icon" aria-label={`Remove variable ${index + 1}`}
              onClick={() => set('env', values.env.filter((_, i) => i !== index))}>×</button>
          </div>
        ))}
        <button type="button" onClick={() => set('env', [...values.env, { key: '', value: '' }])}>Add variable</button>
      </fieldset>
      {upload && <UploadStatus upload={upload} />}
      {error && <ErrorBox title={props.mode === 'create' ? 'Could not create the function' : 'Could not save'} error={error} testId="form-error" />}
      <div className="actions">
        <button type="submit" className="primary"
          disabled={busy || (props.mode === 'edit' && !dirty) || (values.source === 'zip' && file !== null && zipProblem(file) !== null)}>
          {busy ? (props.mode === 'create' ? 'Creating…' : 'Saving…') : props.submitLabel}
        </button>
        {props.mode === 'edit' && dirty && !busy && (
          <button type="button" onClick={() => { setValues(previous.current); setError(null); }}>Discard changes</button>
        )}
        <span className="form-status" data-testid="save-status">
          {busy ? '' : props.mode === 'edit' && dirty ? 'Unsaved changes' : saved && props.mode === 'edit' ? 'Saved, live now' : ''}
        </span>
        {props.status}
      </div>
    </form>
  );
}
