// New function: the form, then straight to the function's page, which follows the deployment live.
import { useEffect } from 'react';
import { api, type FunctionInput } from './api';
import { markCreated } from './FunctionDetail';
import { FunctionForm, newFunction } from './FunctionForm';
import { linkTo, navigate } from './router';

export function CreatePage() {
  useEffect(() => {
    document.title = 'New function · fnvm';
  }, []);
  const create = async (input: FunctionInput) => {
    const { id } = await api.create(input);
    markCreated(id);
    navigate(`/functions/${id}`);
  };
  return (
    <section className="page">
      <div className="page-head">
        <div className="title">
          <a className="back" {...linkTo('/')}>← Functions</a>
          <h1>New function</h1>
        </div>
      </div>
      <div className="detail-grid">
        <section className="card editor-card">
          <FunctionForm mode="create" initial={newFunction} onSubmit={create} submitLabel="Create function" />
        </section>
        <aside className="card help">
          <h2>How it runs</h2>
          <p>Each function gets its own microVM with the chosen runtime. Creating one deploys it at once; its page shows
            the deployment live (creating → booting → deploying → ready) and lets you test it.</p>
          <h3>Handler</h3>
          <p>
            A top-level <code>handler(event)</code>, async or not (in Node.js also <code>module.exports</code>,{' '}
            <code>exports.handler</code> or an ESM export). <code>event</code> is the JSON you invoke with; return any JSON value.
          </p>
          <h3>Logs</h3>
          <p><code>console.log</code> / <code>print</code> output is captured per invocation.</p>
          <h3>Limits</h3>
          <p>
            vCPU 1–8, memory 128–4096 MB, timeout 1–900 s. Environment variables are visible to the code as{' '}
            <code>process.env</code> / <code>os.environ</code>.
          </p>
        </aside>
      </div>
    </section>
  );
}
