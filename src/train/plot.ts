// Training curves as one self-contained HTML page (inline SVG): loss per epoch and the
// validation selection score.
import type { EpochRecord } from './trainer.ts';

function series(points: [number, number][], w: number, h: number, color: string, label: string): string {
  if (!points.length) return '';
  const xs = points.map((p) => p[0]), ys = points.map((p) => p[1]);
  const x0 = Math.min(...xs), x1 = Math.max(...xs, x0 + 1), y0 = Math.min(...ys), y1 = Math.max(...ys, y0 + 1e-9);
  const X = (x: number) => 50 + ((x - x0) / (x1 - x0)) * (w - 70), Y = (y: number) => h - 30 - ((y - y0) / (y1 - y0)) * (h - 60);
  const path = points.map((p, i) => `${i ? 'L' : 'M'}${X(p[0]).toFixed(1)},${Y(p[1]).toFixed(1)}`).join(' ');
  return `<svg width="${w}" height="${h}" xmlns="http://www.w3.org/2000/svg"><rect width="100%" height="100%" fill="#fff"/>
<text x="${w / 2}" y="16" text-anchor="middle" font-family="sans-serif" font-size="13">${label}</text>
<line x1="50" y1="${h - 30}" x2="${w - 20}" y2="${h - 30}" stroke="#888"/><line x1="50" y1="30" x2="50" y2="${h - 30}" stroke="#888"/>
<text x="46" y="${Y(y1) + 4}" text-anchor="end" font-size="10" font-family="sans-serif">${y1.toPrecision(3)}</text>
<text x="46" y="${Y(y0) + 4}" text-anchor="end" font-size="10" font-family="sans-serif">${y0.toPrecision(3)}</text>
<text x="${X(x0)}" y="${h - 14}" text-anchor="middle" font-size="10" font-family="sans-serif">${x0}</text>
<text x="${X(x1)}" y="${h - 14}" text-anchor="middle" font-size="10" font-family="sans-serif">${x1} (epoch)</text>
<path d="${path}" fill="none" stroke="${color}" stroke-width="2"/>
${points.map((p) => `<circle cx="${X(p[0]).toFixed(1)}" cy="${Y(p[1]).toFixed(1)}" r="3" fill="${color}"><title>${p[1]}</title></circle>`).join('')}</svg>`;
}

export function trainingPlotHtml(history: EpochRecord[], title = 'micar training'): string {
  const loss = history.map((r) => [r.epoch + 1, r.loss] as [number, number]);
  const val = history.filter((r) => r.val).map((r) => [r.epoch + 1, r.val!.selection] as [number, number]);
  return `<!doctype html><meta charset="utf-8"><title>${title}</title><body style="font-family:sans-serif">
<h2>${title}</h2>${series(loss, 520, 260, '#c0392b', 'training loss')}${series(val, 520, 260, '#2471a3', 'validation selection score (B1..4/8 + METEOR/4 + ROUGE-L/4)')}
<pre>${JSON.stringify(history, null, 1).replace(/</g, '&lt;')}</pre></body>`;
}
