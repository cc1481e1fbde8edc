// Where output goes: results on stdout (JSON alone with --json), progress and logs on stderr.

export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + '\n');
}

export function printLine(line: string): void {
  process.stdout.write(line + '\n');
}

export function note(line: string): void {
  process.stderr.write(line + '\n');
}

/** Rows as aligned columns, the header first. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((title, i) => Math.max(title.length, ...rows.map((row) => (row[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((cell, i) => (i === cells.length - 1 ? cell : cell.padEnd(widths[i] ?? 0))).join('  ');
  return [line(header), ...rows.map(line)].join('\n');
}

export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

/** Upload progress: a line redrawn in place on a terminal; elsewhere only the final line. */
export function uploadProgress(stream: NodeJS.WriteStream = process.stderr): { update: (sent: number, total: number) => void; done: (total: number) => void } {
  let lastPercent = -1;
  return {
    update(sent, total) {
      if (!stream.isTTY) return;
      const percent = Math.floor((sent / total) * 100);
      if (percent === lastPercent) return;
      lastPercent = percent;
      stream.write(`\ruploading ${formatBytes(sent)} / ${formatBytes(total)} (${percent}%)`);
    },
    done(total) {
      stream.write(`${stream.isTTY && lastPercent >= 0 ? '\r\x1b[K' : ''}uploaded ${formatBytes(total)}\n`);
    },
  };
}
