// Mixture-of-experts routing per generated word, and expert usage counts over a data set.
import type { AttentionTrace } from './heatmap.ts';

export interface LayerRouting {
  /** The k experts chosen, in the gate's order (highest gate score first). */
  experts: number[];
  weights: number[];
}

export interface WordRouting {
  step: number;
  token: number;
  layers: LayerRouting[];
}

/** The experts each generated token's step was routed to, per decoder layer. */
export function routingPerWord(tr: AttentionTrace): WordRouting[] {
  return tr.tokens.map((token, step) => ({
    step,
    token,
    layers: tr.experts[step].map((e) => ({ experts: [...e.indices], weights: [...e.weights] })),
  }));
}

export interface ExpertUsage {
  layers: number;
  numExperts: number;
  /** counts[l][e]: how many tokens layer l sent to expert e (each token counts once per chosen expert). */
  counts: number[][];
  /** weightSums[l][e]: the summed gate weights those tokens gave expert e. */
  weightSums: number[][];
  /** Tokens counted (each sends k slots per layer). */
  tokens: number;
}

/**
 * Expert usage over a set of generated reports (one trace each). Steps after a trace's first
 * <eos> are not counted when `eosId` is given (traces from `generate` stop there anyway).
 */
export function expertUsage(traces: Iterable<AttentionTrace>, opts: { eosId?: number } = {}): ExpertUsage {
  let u: ExpertUsage | null = null;
  for (const tr of traces) {
    if (!u) {
      u = {
        layers: tr.layers,
        numExperts: tr.numExperts,
        counts: Array.from({ length: tr.layers }, () => new Array(tr.numExperts).fill(0)),
        weightSums: Array.from({ length: tr.layers }, () => new Array(tr.numExperts).fill(0)),
        tokens: 0,
      };
    } else if (tr.layers !== u.layers || tr.numExperts !== u.numExperts) {
      throw new Error(`expertUsage: traces of ${u.layers} layers × ${u.numExperts} experts and ${tr.layers} × ${tr.numExperts} mixed`);
    }
    for (let t = 0; t < tr.tokens.length; t++) {
      u.tokens++;
      for (let l = 0; l < tr.layers; l++) {
        const { indices, weights } = tr.experts[t][l];
        indices.forEach((e, j) => {
          if (!(e >= 0 && e < u!.numExperts)) throw new Error(`expertUsage: step ${t} layer ${l} routed to expert ${e} of ${u!.numExperts}`);
          u!.counts[l][e]++;
          u!.weightSums[l][e] += weights[j];
        });
      }
      if (opts.eosId !== undefined && tr.tokens[t] === opts.eosId) break;
    }
  }
  if (!u) throw new Error('expertUsage: no traces');
  return u;
}

/** counts[l][e] / Σ_e counts[l][e]: the share of routing slots each expert took per layer. */
export function usageShares(u: ExpertUsage): number[][] {
  return u.counts.map((row) => {
    const s = row.reduce((a, b) => a + b, 0);
    return row.map((c) => (s ? c / s : 0));
  });
}
