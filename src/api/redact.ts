// Tokens never reach a log line. Event streams take the token as ?access_token= (EventSource cannot send
// headers), and URLs are logged (Fastify's request lines) and echoed (404 messages).

const tokenParam = 'access_token';

function decoded(name: string): string {
  try {
    return decodeURIComponent(name.replace(/\+/g, ' '));
  } catch {
    return name;
  }
}

/** The URL with the value of every access_token parameter, however its name is encoded, replaced. */
export function redactUrl(url: string): string {
  const query = url.indexOf('?');
  if (query < 0) return url;
  const params = url.slice(query + 1).split('&').map((param) => {
    const name = param.split('=', 1)[0] ?? '';
    return decoded(name) === tokenParam ? `${tokenParam}=[redacted]` : param;
  });
  return `${url.slice(0, query)}?${params.join('&')}`;
}

/** Last line of defence for text that embeds a URL (error messages): every serialized log line. */
export function redactLine(line: string): string {
  return line.replace(/access_token=(?:\\.|[^&\s"\\#])*/g, `${tokenParam}=[redacted]`);
}
