// A one-line progress bar with loss, tokens/s and ETA (rewritten in place on a terminal).

export class Progress {
  private total = 0;
  private done = 0;
  private first = 0;
  private label = '';
  private t0 = 0;
  private tokens = 0;
  private loss = NaN;
  private lastPrint = 0;

  constructor(private readonly out: ((line: string) => void) | null) {}

  start(label: string, total: number, already = 0): void {
    Object.assign(this, { label, total, done: already, first: already, t0: Date.now(), tokens: 0, loss: NaN, lastPrint: 0 });
  }

  tick(loss: number, tokens: number): void {
    this.done++;
    this.tokens += tokens;
    this.loss = Number.isNaN(this.loss) ? loss : 0.9 * this.loss + 0.1 * loss;
    const now = Date.now();
    if (now - this.lastPrint > 500 || this.done === this.total) {
      this.lastPrint = now;
      this.print(false);
    }
  }

  end(): void {
    if (this.done > this.first) this.print(true);
  }

  line(): string {
    const el = (Date.now() - this.t0) / 1000;
    const steps = this.done - this.first;
    const eta = steps ? (el / steps) * (this.total - this.done) : NaN;
    const w = 24, fill = Math.round((w * this.done) / Math.max(1, this.total));
    return `${this.label} [${'#'.repeat(fill)}${'.'.repeat(w - fill)}] ${this.done}/${this.total} loss ${this.loss.toFixed(4)} ` +
      `${(this.tokens / Math.max(el, 1e-9)).toFixed(0)} tok/s ETA ${Number.isFinite(eta) ? fmt(eta) : '?'}`;
  }

  private print(final: boolean): void {
    if (!this.out) return;
    const tty = typeof Deno !== 'undefined' && Deno.stderr?.isTerminal?.();
    if (tty) {
      const enc = new TextEncoder();
      Deno.stderr.writeSync(enc.encode(`\r${this.line()}${final ? '\n' : ''}`));
    } else if (final) this.out(this.line());
  }
}

declare const Deno: { stderr: { isTerminal?(): boolean; writeSync(b: Uint8Array): number } } | undefined;

function fmt(s: number): string {
  const m = Math.floor(s / 60), r = Math.round(s % 60);
  return m ? `${m}m${String(r).padStart(2, '0')}s` : `${r}s`;
}
