import pino from 'pino';
import type { Logger } from 'pino';

/**
 * JSON lines on stdout. Secrets are kept out of log calls in the first place (they travel
 * as `Secret` objects that print as `[redacted]`); the redact paths are a second net for
 * a field that slips through.
 */
export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  return pino(
    {
      name: 'operator-telemetry',
      level,
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: {
        paths: [
          'key',
          'privateKey',
          'token',
          'apiToken',
          'password',
          'authorization',
          'headers.authorization',
          '*.privateKey',
          '*.apiToken',
          '*.signerKey',
        ],
        censor: '[redacted]',
      },
    },
    destination ?? pino.destination({ dest: 1, sync: true }),
  );
}
