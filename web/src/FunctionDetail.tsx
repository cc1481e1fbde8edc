// One function: live state (its own event stream), code (or package) and settings with hot reload, invoke,
// metrics charts and history (both live on one follow stream of its invocation records).
import { lazy, Suspense, useCallback, useEffect, useMemo, useRef, useState, type ReactNode } from 'react';
import { AsyncQueue } from './AsyncQueue';
import { api, ApiError, inProgress, watch, type FunctionInput, type FunctionRecord, type FunctionSettings, type Health } from './api';
import { takeCreated } from './created';
import { FunctionForm, type Submission } from './FunctionForm';
import { History } from './History';
import { useInvocationFeed } from './invocation-feed';
import { InvokePanel } from './InvokePanel';
import { PackageView } from './PackageView';
import { linkTo, navigate } from './router';
import { ConfirmDialog, ErrorBox, formatTime, isNewer, StateBadge, timeAgo, useNow } from './ui';

// The charts are a chunk of their own (uPlot), loaded with the page but not holding it up.
const MetricsCharts = lazy(() => import('./MetricsCharts'));

const steps = ['creating', 'booting', 'deploying', 'ready'] as const;

/** The live deployment indicator: steps while it deploys, the error in full if it failed. */
function DeployStatus({ fn, since, onTestInvoke }: { fn: FunctionRecord; since: string | null; onTestInvoke: () => void }) {
  if (fn.state === 'error') {
    return (
      <div className="deploy deploy-error">
        <ErrorBox title="Deployment failed" error={fn.error ?? 'unknown error'} testId="deploy-error" />
        <p className="muted">{fn.package ? 'Upload a fixed zip below to deploy again.' : 'Fix the code below and save to deploy again.'}</p>
      </div>
    );
  }
  if (!inProgress(fn.state) && since === null) return null;
  const current = steps.indexOf(fn.state);
  const took = fn.state === 'ready' && since ? (Date.parse(fn.updated_at) - Date.parse(since)) / 1000 : null;
  return (
    <div className={`deploy ${fn.state === 'ready' ? 'deploy-done' : 'deploy-running'}`} role="status" aria-live="polite" data-testid="deploy-status">
      <ol className="steps">
        {steps.map((step, i) => (
          <li key={step} className={i < current ? 'done' : i === current ? 'current' : ''}>{step}</li>
        ))}
      </ol>
      {fn.state === 'ready' ? (
        <div className="deploy-ready">
          <span>Deployed{took !== null && took >= 0 ? ` in ${took.toFixed(1)} s` : ''}. The function is ready.</span>
          <button type="button" className="primary" onClick={onTestInvoke}>Test invoke</button>
        </div>
      ) : (
        <span className="muted">Deploying: {fn.state}…</span>
      )}
    </div>
  );
}

function Details({ fn, health, now }: { fn: FunctionRecord; health: Health | null; now: number }) {
  const rows: Array<[string, ReactNode]> = [
    ['ID', <code>{fn.id}</code>],
    ['Created', formatTime(fn.created_at)],
    ['Updated', formatTime(fn.updated_at)],
    ['Last invoked', fn.last_invoked_at ? `${formatTime(fn.last_invoked_at)} (${timeAgo(fn.last_invoked_at, now)})` : 'never'],
    ['Version', `v${fn.version}`],
    ['Resources', `${fn.vcpu} vCPU · ${fn.memory_mb} MB · ${fn.timeout_seconds} s timeout · ${fn.max_concurrency} concurrent`],
  ];
  const vm: Array<[string, ReactNode]> = [
    ['VM ID', fn.vm_id ? <code data-testid="vm-id">{fn.vm_id}</code>
      : <span className="muted">{fn.state === 'ready' ? 'none: idle, scaled to zero (the next invocation starts one)' : 'none'}</span>],
    ['Guest IP', fn.guest_ip ?? <span className="muted">none</span>],
    ['Host', <span data-testid="host">{fn.host_id ?? 'this server (not a fleet)'}</span>],
    ['Initialisation', fn.init_ms === null ? <span className="muted">not measured yet</span> : `${Math.round(fn.init_ms)} ms`],
    ['Snapshot', fn.snapshot_bytes === null
      ? <span className="muted">none (a wake loads the code again)</span>
      : <span data-testid="snapshot">{(fn.snapshot_bytes / 2 ** 20).toFixed(1)} MiB on disk: a wake restores it instead of initialising</span>],
    ['Accelerator', health ? <span title={health.accelerator_reason}>{health.accelerator.toUpperCase()} <span className="muted">({health.accelerator_reason})</span></span> : '…'],
    ['VM driver', health?.vm_driver ?? '…'],
  ];
  const list = (entries: Array<[string, ReactNode]>) => (
    <dl className="meta">
      {entries.map(([term, value]) => (
        <div key={term}>
          <dt>{term}</dt>
          <dd>{value}</dd>
        </div>
      ))}
    </dl>
  );
  return (
    <section className="card" aria-labelledby="details-title">
      <h2 id="details-title">Details</h2>
      {list(rows)}
      <h3>VM</h3>
      {list(vm)}
    </section>
  );
}

/** The PUT body: only the fields that differ from the stored function (a packaged one's package is not in it). */
function patchOf(fn: FunctionRecord, input: FunctionSettings & { code?: string }): Partial<FunctionInput> {
  const patch: Partial<FunctionInput> = {};
  for (const key of ['name', 'code', 'handler', 'vcpu', 'memory_mb', 'timeout_seconds'] as const) {
    if (input[key] !== undefined && input[key] !== fn[key]) (patch as Record<string, unknown>)[key] = input[key];
  }
  if (JSON.stringify(input.env_vars) !== JSON.stringify(fn.env_vars)) patch.env_vars = input.env_vars;
  return patch;
}

export function FunctionDetail({ id, health, onConnection }: { id: string; health: Health | null; onConnection: (live: boolean) => void }) {
  const [fn, setFn] = useState<FunctionRecord | null>(null);
  const [loadError, setLoadError] = useState<Error | null>(null);
  const [deleted, setDeleted] = useState(false);
  const [deploySince, setDeploySince] = useState<string | null>(null);
  const [confirmDelete, setConfirmDelete] = useState(false);
  const [testInvoke, setTestInvoke] = useState(0);
  const now = useNow();

  const accept = useCallback((item: FunctionRecord) => {
    setFn((current) => (current && current.id === item.id && !isNewer(item, current) ? current : item));
    // Remember when a deployment we watched began, to say how long it took.
    if (takeCreated(item.id)) setDeploySince(item.created_at);
    else if (inProgress(item.state)) setDeploySince((since) => since ?? item.updated_at);
  }, []);

  // The first load tells a 404 apart; then the function's own event stream keeps it current.
  const functionId = fn?.id;
  // One follow stream of new invocation records for the history and the charts.
  const feed = useInvocationFeed(functionId);
  // The top bar's dot: live while both streams are up.
  const [eventsLive, setEventsLive] = useState<boolean | null>(null);
  const [feedLive, setFeedLive] = useState<boolean | null>(null);
  useEffect(() => {
    if (eventsLive !== null && feedLive !== null) onConnection(eventsLive && feedLive);
    else if (eventsLive === false || feedLive === false) onConnection(false);
  }, [eventsLive, feedLive, onConnection]);
  // last_invoked_at changes without a function event: it is the invoked_at of the record committed last.
  useEffect(() => feed.subscribe({
    onRecord: (record) => setFn((current) => current && { ...current, last_invoked_at: record.invoked_at }),
    onConnection: setFeedLive,
  }), [feed]);
  useEffect(() => {
    let current = true;
    setFn(null);
    setLoadError(null);
    setDeleted(false);
    setDeploySince(null);
    api.get(id).then(
      (item) => current && accept(item),
      (error: Error) => current && setLoadError(error),
    );
    return () => {
      current = false;
    };
  }, [id, accept]);

  useEffect(() => {
    if (!functionId) return;
    return watch(functionId, {
      onConnection: setEventsLive,
      onChange: (change) => {
        if (change.type === 'deleted') setDeleted(true);
        else accept(change.item);
      },
    });
  }, [functionId, accept]);

  useEffect(() => {
    if (fn) document.title = `${fn.name} · fnvm`;
    // eslint-disable-next-line react-hooks/exhaustive-deps -- on a new name, not on every update of `fn`
  }, [fn?.name]);

  // /functions/{id}#invoke and #history (the list's Invoke and Logs buttons) land on that section.
  const scrolled = useRef(false);
  useEffect(() => {
    if (!fn || scrolled.current || !location.hash) return;
    scrolled.current = true;
    const target = document.getElementById(location.hash.slice(1));
    target?.scrollIntoView({ block: 'start' });
    if (location.hash === '#invoke') target?.querySelector<HTMLElement>('.cm-content')?.focus();
  }, [fn]);

  const initial = useMemo<FunctionInput | null>(
    // A packaged function has no code: the form shows its settings only.
    () => fn && { name: fn.name, runtime: fn.runtime, code: fn.code ?? '', handler: fn.handler, vcpu: fn.vcpu,
      memory_mb: fn.memory_mb, timeout_seconds: fn.timeout_seconds, env_vars: fn.env_vars },
    // eslint-disable-next-line react-hooks/exhaustive-deps -- on new settings, not on every update of `fn` (state, vm)
    [fn?.name, fn?.runtime, fn?.code, fn?.handler, fn?.vcpu, fn?.memory_mb, fn?.timeout_seconds, JSON.stringify(fn?.env_vars)],
  );

  if (loadError) {
    return (
      <section className="page">
        <p><a {...linkTo('/')}>← Functions</a></p>
        <ErrorBox title={loadError instanceof ApiError && loadError.status === 404 ? 'No such function' : 'Could not load the function'} error={loadError} />
      </section>
    );
  }
  if (!fn || !initial) return <section className="page"><p className="muted">Loading…</p></section>;

  const save = async (submission: Submission) => {
    if (submission.source === 'zip') throw new Error('a new package is uploaded in the Package card');
    const patch = patchOf(fn, submission.source === 'code' ? submission.input : submission.settings);
    if (Object.keys(patch).length === 0) return;
    if (fn.state === 'error') setDeploySince(null);
    accept(await api.update(fn.id, patch));
  };

  return (
    <section className="page detail">
      <div className="page-head">
        <div className="title">
          <a className="back" {...linkTo('/')}>← Functions</a>
          <h1>{fn.name}</h1>
          <StateBadge state={fn.state} testId="function-state" />
          <span className="muted">{fn.runtime === 'node' ? 'Node.js' : 'Python'} · <span data-testid="function-version">v{fn.version}</span></span>
        </div>
        <button type="button" className="danger-outline" onClick={() => setConfirmDelete(true)} disabled={deleted}>Delete</button>
      </div>
      {deleted && <ErrorBox error="This function has been deleted." testId="deleted" />}
      <DeployStatus fn={fn} since={deploySince} onTestInvoke={() => {
        document.getElementById('invoke')?.scrollIntoView({ block: 'start', behavior: 'smooth' });
        setTestInvoke((n) => n + 1);
      }} />
      <div className="detail-grid">
        {fn.package ? (
          <div className="main-column">
            <PackageView fn={fn} pkg={fn.package} onUpdated={accept} />
            <section className="card editor-card" aria-labelledby="code-title">
              <h2 id="code-title">Configuration</h2>
              <FunctionForm mode="edit" packaged initial={initial} onSubmit={save} submitLabel="Save and reload" />
            </section>
          </div>
        ) : (
          <section className="card editor-card" aria-labelledby="code-title">
            <h2 id="code-title">Code and configuration</h2>
            <FunctionForm mode="edit" initial={initial} onSubmit={save} submitLabel="Save and reload" />
          </section>
        )}
        <div className="side">
          <InvokePanel fn={fn} trigger={testInvoke} />
          <Details fn={fn} health={health} now={now} />
        </div>
      </div>
      <Suspense fallback={<section className="card metrics"><h2>Metrics</h2><p className="muted">Loading…</p></section>}>
        <MetricsCharts functionId={fn.id} feed={feed} />
      </Suspense>
      <AsyncQueue fn={fn} feed={feed} />
      <History functionId={fn.id} feed={feed} />
      {confirmDelete && (
        <ConfirmDialog title={`Delete ${fn.name}?`} confirmLabel="Delete" onClose={() => setConfirmDelete(false)}
          onConfirm={async () => {
            await api.remove(fn.id);
            navigate('/');
          }}>
          <p>Its VM is stopped and its invocation history is deleted. This cannot be undone.</p>
        </ConfirmDialog>
      )}
    </section>
  );
}
