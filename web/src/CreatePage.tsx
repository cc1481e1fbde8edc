// New function: the form, then straight to the function's page, which follows the deployment live.
import { useEffect } from 'react';
import { packageLimits } from '../../src/packages/types.js';
import { api, type PackageInput } from './api';
import { markCreated } from './created';
import { FunctionForm, newFunction, type Submission } from './FunctionForm';
import { linkTo, navigate } from './router';
import { uploadZip, type Upload } from './upload';
import { formatBytes } from './zip-file';

export function CreatePage() {
  useEffect(() => {
    document.title = 'New function · fnvm';
  }, []);
  const create = async (submission: Submission, report: (upload: Upload) => void) => {
    let id: string;
    if (submission.source === 'code') ({ id } = await api.create(submission.input));
    else if (submission.source === 'zip') {
      const { handler, ...settings } = submission.settings;
      ({ id } = await uploadZip(submission.file, (base64, onProgress) => {
        // No handler: the server's default for the runtime (the field shows it as its placeholder).
        const fields: PackageInput = handler === '' ? settings : { ...settings, handler };
        return api.createPackaged(fields, base64, onProgress);
      }, report));
    } else throw new Error('a new function has no package yet');
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
          <h3>Zip packages</h3>
          <p>
            A zip of several files, with <code>node_modules</code> or vendored Python packages, as for AWS Lambda: the handler
            is <code>file.function</code> (<code>index.handler</code>, <code>src/app.handler</code>,{' '}
            <code>lambda_function.lambda_handler</code>) and the files are read-only at <code>/var/task</code>. At most{' '}
            {formatBytes(packageLimits.zippedBytes)} zipped, {formatBytes(packageLimits.unpackedBytes)} unpacked,{' '}
            {packageLimits.entries.toLocaleString('en')} files.
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
