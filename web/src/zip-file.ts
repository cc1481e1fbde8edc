// A chosen zip in the browser: its checks before upload, and its base64 for the JSON body of the API.
import { packageLimits } from '../../src/packages/types.js';

/**
 * Slices read per step: a multiple of 3 bytes, so each slice's base64 has no padding and the pieces join into
 * the base64 of the whole. FileReader encodes natively and off the main thread; between slices the page
 * stays responsive (a 50 MiB zip is 17 slices), and no call sees more than one slice (no spread of a big array).
 */
const sliceBytes = 3 * 2 ** 20;

/** Why a file cannot be a package, before anything is sent; null if it may be (the server checks the rest). */
export function zipProblem(file: File): string | null {
  if (file.size === 0) return `${file.name} is empty`;
  if (file.size > packageLimits.zippedBytes) {
    return `${file.name} is ${formatBytes(file.size)}: a package is at most ${formatBytes(packageLimits.zippedBytes)} zipped`;
  }
  return null;
}

function readSlice(blob: Blob): Promise<string> {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.addEventListener('load', () => {
      const url = reader.result;
      if (typeof url !== 'string') return reject(new Error('FileReader gave no data URL'));
      // data:[<type>];base64,<data>
      resolve(url.slice(url.indexOf(',') + 1));
    });
    reader.addEventListener('error', () => reject(new Error(`cannot read the file: ${reader.error?.message ?? 'unknown error'}`)));
    reader.readAsDataURL(blob);
  });
}

/**
 * Base64 of the file's bytes, read slice by slice; `onProgress` gets the bytes read so far. A Blob of the pieces,
 * never one string: a 67 MiB string froze the page for seconds when it was turned into a request body.
 */
export async function base64Of(file: Blob, onProgress: (read: number, total: number) => void = () => {}): Promise<Blob> {
  const parts: string[] = [];
  for (let at = 0; at < file.size; at += sliceBytes) {
    const slice = file.slice(at, Math.min(at + sliceBytes, file.size));
    parts.push(await readSlice(slice));
    onProgress(at + slice.size, file.size);
  }
  return new Blob(parts, { type: 'text/plain' });
}

/** 512 B, 1.5 KiB, 12.3 MiB, 250 MiB: binary units, as the API's limits are counted. */
export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KiB', 'MiB', 'GiB'] as const;
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  // One decimal below 100, none above; never a bare .0 (50 MiB, not 50.0 MiB).
  return `${value < 100 ? value.toFixed(1).replace(/\.0$/, '') : Math.round(value)} ${units[unit]}`;
}
