// JSON schemas of request bodies: types only. Ranges and formats are domain rules (src/functions/validation).
const definition = {
  name: { type: 'string' },
  runtime: { type: 'string' },
  code: { type: 'string' },
  package: { type: 'string' }, // base64 of a zip
  handler: { type: 'string' },
  vcpu: { type: 'integer' },
  memory_mb: { type: 'integer' },
  timeout_seconds: { type: 'integer' },
  max_concurrency: { type: 'integer' },
  env_vars: { type: 'object', additionalProperties: { type: 'string' } },
  description: { type: 'string' },
  async_max_retries: { type: 'integer' },
  async_max_event_age_seconds: { type: 'integer' },
} as const;

// code or package: the domain says which is missing, in words.
export const createBody = { type: 'object', required: ['name', 'runtime'], properties: definition } as const;
export const updateBody = { type: 'object', properties: definition } as const;

/** Redrive: every dead letter (no body, `{}`), or those named. */
export const redriveBody = {
  type: ['object', 'null'],
  properties: { request_ids: { type: 'array', items: { type: 'string' }, maxItems: 10_000 } },
  additionalProperties: false,
} as const;
