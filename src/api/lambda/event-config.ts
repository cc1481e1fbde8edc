// PutFunctionEventInvokeConfig / GetFunctionEventInvokeConfig (`/2019-09-25/functions/{name}/event-invoke-config`):
// Lambda's names for a function's asynchronous settings, fnvm's async_max_retries and async_max_event_age_seconds.
// fnvm has no destinations: a DestinationConfig naming one is refused, not ignored.
import type { FunctionInput } from '../../functions/service.js';
import { asyncDefaults, type FunctionRecord } from '../../store/types.js';
import { isSet, optInteger, optObject, type JsonObject } from './body.js';
import { invalidParameter, resourceNotFound } from './errors.js';
import { functionArn, latest } from './names.js';

export function eventInvokeConfig(record: FunctionRecord, region: string): Record<string, unknown> {
  if (record.async_configured_at === null) {
    throw resourceNotFound(`The function ${functionArn(region, record.name, latest)} doesn't have an EventInvokeConfig`);
  }
  return {
    FunctionArn: functionArn(region, record.name, latest),
    MaximumRetryAttempts: record.async_max_retries,
    MaximumEventAgeInSeconds: record.async_max_event_age_seconds,
    // A timestamp member of this shape: epoch seconds as a JSON number (the SDKs refuse a string here).
    LastModified: Date.parse(record.async_configured_at) / 1000,
    DestinationConfig: { OnSuccess: {}, OnFailure: {} },
  };
}

/** A Put replaces the whole configuration: what it leaves out goes back to Lambda's defaults. */
export function eventInvokeConfigInput(body: JsonObject): FunctionInput {
  const destinations = optObject(body, 'DestinationConfig');
  if (destinations && isSet(destinations)) throw invalidParameter('DestinationConfig is not supported by fnvm: failed events go to the function\'s dead-letter list (GET /v1/functions/{id}/dead-letters)');
  const retries = optInteger(body, 'MaximumRetryAttempts');
  const age = optInteger(body, 'MaximumEventAgeInSeconds');
  if (retries === undefined && age === undefined) {
    throw invalidParameter('You must specify at least one of error handling or destination setting.');
  }
  return {
    async_max_retries: retries ?? asyncDefaults.maxRetries,
    async_max_event_age_seconds: age ?? asyncDefaults.maxEventAgeSeconds,
  };
}
