// Where a package upload is: reading the zip in the browser (base64), then sending it, then the server's answer.
import type { Upload } from './upload';
import { formatBytes } from './zip-file';

export function UploadStatus({ upload }: { upload: Upload }) {
  const text = upload.phase === 'reading' ? `Reading the zip… ${formatBytes(upload.done)} of ${formatBytes(upload.total)}`
    : upload.phase === 'sending' ? `Uploading… ${formatBytes(upload.done)} of ${formatBytes(upload.total)}`
      : 'Uploaded; the server is checking the package…';
  const fraction = upload.phase === 'waiting' ? undefined : upload.total === 0 ? 1 : upload.done / upload.total;
  return (
    <div className="upload-status" role="status" data-testid="upload-status" data-phase={upload.phase}>
      <progress max={1} value={fraction} aria-label="Upload progress" />
      <span className="muted">{text}</span>
    </div>
  );
}
