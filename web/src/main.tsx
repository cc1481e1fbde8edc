// The fnvm web console: a list of functions, a create form, and a page per function.
import { lazy, StrictMode, Suspense, useEffect, useState } from 'react';
import { createRoot } from 'react-dom/client';
import { api, apiToken, unauthorizedEvent, type Health } from './api';
import { FunctionList } from './FunctionList';
import { linkTo, parseRoute, useLocation } from './router';
import './styles.css';

// The create and function pages are chunks of their own, loaded when first shown: the list (the landing page)
// loads neither CodeMirror nor uPlot.
const CreatePage = lazy(async () => ({ default: (await import('./CreatePage')).CreatePage }));
const FunctionDetail = lazy(async () => ({ default: (await import('./FunctionDetail')).FunctionDetail }));

function App() {
  const { pathname } = useLocation();
  const route = parseRoute(pathname);
  const [health, setHealth] = useState<Health | null>(null);
  const [live, setLive] = useState<boolean | null>(null);
  useEffect(() => {
    api.health().then(setHealth, () => setHealth(null));
  }, []);
  useEffect(() => setLive(null), [route.page]);
  const [needsToken, setNeedsToken] = useState(false);
  useEffect(() => {
    const ask = () => setNeedsToken(true);
    window.addEventListener(unauthorizedEvent, ask);
    return () => window.removeEventListener(unauthorizedEvent, ask);
  }, []);

  return (
    <>
      <header className="topbar">
        <a className="brand" {...linkTo('/')}>
          <span className="logo" aria-hidden="true">λ</span> fnvm
        </a>
        <nav>
          <a {...linkTo('/')} aria-current={route.page === 'list' ? 'page' : undefined}>Functions</a>
          <a {...linkTo('/new')} aria-current={route.page === 'create' ? 'page' : undefined}>New</a>
        </nav>
        <div className="topbar-status">
          {live !== null && (
            <span className={`live ${live ? 'on' : 'off'}`} data-testid="live" title={live ? 'Receiving live updates' : 'Reconnecting to live updates'}>
              {live ? 'live' : 'reconnecting'}
            </span>
          )}
          {health && <span className="muted accel" title={health.accelerator_reason}>{health.accelerator.toUpperCase()} · {health.vm_driver}</span>}
        </div>
      </header>
      <main>
        {needsToken && <TokenForm />}
        {route.page === 'list' && <FunctionList onConnection={setLive} />}
        <Suspense fallback={<section className="page"><p className="muted">Loading…</p></section>}>
          {route.page === 'create' && <CreatePage />}
          {route.page === 'detail' && <FunctionDetail key={route.id} id={route.id} health={health} onConnection={setLive} />}
        </Suspense>
        {route.page === 'missing' && (
          <section className="page">
            <h1>Not found</h1>
            <p>Nothing at {route.path}. <a {...linkTo('/')}>Back to the functions</a></p>
          </section>
        )}
      </main>
    </>
  );
}

/** Shown when the server wants a bearer token (FNVM_API_TOKEN): kept in this browser, then the page reloads. */
function TokenForm() {
  const [token, setToken] = useState('');
  return (
    <form className="card token-form" onSubmit={(e) => { e.preventDefault(); apiToken.set(token.trim()); location.reload(); }}>
      <h2>This server needs an API token</h2>
      <p className="muted">{apiToken.get() ? 'The saved token was refused. ' : ''}Enter the server's FNVM_API_TOKEN; it is kept in this browser only.</p>
      <div className="actions">
        <input type="password" aria-label="API token" value={token} onChange={(e) => setToken(e.target.value)} autoComplete="off" required />
        <button type="submit" className="primary">Use token</button>
      </div>
    </form>
  );
}

createRoot(document.getElementById('root')!).render(
  <StrictMode>
    <App />
  </StrictMode>,
);
