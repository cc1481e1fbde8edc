// Request body limits of the HTTP API.
import { packageLimits } from '../packages/types.js';

/** Payloads up to 6 MB, plus room for the JSON around them. */
export const bodyLimitBytes = 6 * 1024 * 1024 + 64 * 1024;

/** A function definition may carry a 50 MiB package: base64 makes it 4/3 as long, plus the JSON around it. */
export const definitionBodyLimitBytes = Math.ceil((packageLimits.zippedBytes * 4) / 3) + 1024 * 1024;
