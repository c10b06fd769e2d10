/**
 * Counters the service keeps for the metrics endpoint and `status`. Plain numbers, so the
 * service does not depend on the metrics library.
 */
export class TelemetryStats {
  accepted = 0;
  failed = 0;
  retries = 0;
  readonly rejected = new Map<string, number>();
  readonly skipped = new Map<string, number>();
  lastCycleAtMs: number | undefined;
  readonly cycleDurationsMs: number[] = [];
  pendingRevisions = 0;
  targetReachable = false;
  signerAuthorised: boolean | undefined;

  recordSkip(code: string): void {
    this.skipped.set(code, (this.skipped.get(code) ?? 0) + 1);
  }

  recordRejection(reason: string): void {
    this.rejected.set(reason, (this.rejected.get(reason) ?? 0) + 1);
  }

  recordCycle(durationMs: number, pending: number): void {
    this.lastCycleAtMs = Date.now();
    this.pendingRevisions = pending;
    this.cycleDurationsMs.push(durationMs);
    if (this.cycleDurationsMs.length > 1000) this.cycleDurationsMs.shift();
  }
}
