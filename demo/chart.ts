// The live loss chart: training loss per step (line) and validation loss (dots), one shared
// y axis, drawn on a canvas at device-pixel resolution.

export interface Series {
  label: string;
  color: string;
  points: { step: number; loss: number }[];
  dots?: boolean;
}

export function drawLossChart(canvas: HTMLCanvasElement, series: Series[]): void {
  const dpr = globalThis.devicePixelRatio || 1;
  const cssW = canvas.clientWidth || 360, cssH = canvas.clientHeight || 180;
  canvas.width = Math.round(cssW * dpr);
  canvas.height = Math.round(cssH * dpr);
  const ctx = canvas.getContext('2d')!;
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  const styles = getComputedStyle(canvas);
  const fg = styles.color || '#222';
  ctx.clearRect(0, 0, cssW, cssH);
  ctx.font = '11px system-ui, sans-serif';
  ctx.fillStyle = fg;
  ctx.strokeStyle = fg;
  const all = series.flatMap((s) => s.points).filter((p) => Number.isFinite(p.loss));
  const L = 44, R = 8, T = 18, B = 22;
  if (!all.length) {
    ctx.textAlign = 'center';
    ctx.fillText('no training steps yet', cssW / 2, cssH / 2);
    return;
  }
  const x0 = Math.min(...all.map((p) => p.step)), x1 = Math.max(x0 + 1, ...all.map((p) => p.step));
  let y0 = Math.min(...all.map((p) => p.loss)), y1 = Math.max(...all.map((p) => p.loss));
  if (y1 - y0 < 1e-6) [y0, y1] = [y0 - 0.5, y1 + 0.5];
  const X = (x: number) => L + ((x - x0) / (x1 - x0)) * (cssW - L - R);
  const Y = (y: number) => cssH - B - ((y - y0) / (y1 - y0)) * (cssH - T - B);
  ctx.globalAlpha = 0.6;
  ctx.beginPath();
  ctx.moveTo(L, T);
  ctx.lineTo(L, cssH - B);
  ctx.lineTo(cssW - R, cssH - B);
  ctx.stroke();
  ctx.globalAlpha = 1;
  ctx.textAlign = 'right';
  ctx.fillText(y1.toPrecision(3), L - 4, Y(y1) + 4);
  ctx.fillText(y0.toPrecision(3), L - 4, Y(y0) + 4);
  ctx.textAlign = 'center';
  ctx.fillText(String(x0), X(x0), cssH - 6);
  ctx.fillText(`${x1} (step)`, X(x1) - 20, cssH - 6);
  let lx = L + 6;
  for (const s of series) {
    ctx.strokeStyle = s.color;
    ctx.fillStyle = s.color;
    ctx.lineWidth = 2;
    const pts = s.points.filter((p) => Number.isFinite(p.loss));
    if (!s.dots) {
      ctx.beginPath();
      pts.forEach((p, i) => (i ? ctx.lineTo(X(p.step), Y(p.loss)) : ctx.moveTo(X(p.step), Y(p.loss))));
      ctx.stroke();
    }
    if (s.dots || pts.length === 1) {
      for (const p of pts) {
        ctx.beginPath();
        ctx.arc(X(p.step), Y(p.loss), 3, 0, 2 * Math.PI);
        ctx.fill();
      }
    }
    ctx.textAlign = 'left';
    ctx.fillRect(lx, 6, 10, 3);
    ctx.fillStyle = fg;
    ctx.fillText(s.label, lx + 14, 11);
    lx += 22 + ctx.measureText(s.label).width;
  }
}
