// The configuration shared by the row-reduction families (`norm`, `softmax`, `loss`): one
// workgroup of WG lanes per row, the row's sums and maxima folded by lib/reduce — through a tree
// in workgroup memory or, `sg`, through subgroup operations (a candidate only where the device
// has the `subgroups` feature).
import type { DeviceProfile } from '../../gpu/profile.ts';
import type { KernelFamily } from './catalogue.ts';

export interface RowConfig {
  /** Lanes per row (a power of two). */
  WG: number;
  sg?: boolean;
}

/** GPU width for rows of n: about 4 elements per lane, 32 to 256 lanes. */
export function rowGpuWidth(n: number): number {
  return n <= 128 ? 32 : n <= 256 ? 64 : n <= 512 ? 128 : 256;
}

export function rowConfigKey(c: RowConfig): string {
  return `wg${c.WG}${c.sg ? ':sg' : ''}`;
}

export function parseRowConfig(s: string): RowConfig | null {
  const m = /^wg(\d+)(:sg)?$/.exec(s);
  const WG = m ? Number(m[1]) : 0;
  return WG >= 1 && WG <= 256 && (WG & (WG - 1)) === 0 ? (m![2] ? { WG, sg: true } : { WG }) : null;
}

/**
 * Candidates for rows of n: the hand pick, the GPU width, and the widths worth timing on this
 * kind of adapter (software: a SIMD vector of 8 to 32 lanes — each barrier of a wider workgroup
 * switches between all its groups of lanes; GPUs: 32 to 256), each with its subgroup twin where
 * the device has the feature.
 */
export function rowCandidates(hand: RowConfig, n: number, profile: DeviceProfile): RowConfig[] {
  const widths = profile.software ? [8, 16, 32] : [32, 64, 128, 256];
  const plain: RowConfig[] = [hand, { WG: rowGpuWidth(n) }, ...widths.map((WG) => ({ WG }))];
  const out = profile.features.subgroups ? [...plain, ...plain.map((c) => ({ ...c, sg: true }))] : plain;
  const seen = new Set<string>();
  return out.filter((c) => c.WG <= profile.limits.maxComputeInvocationsPerWorkgroup && !seen.has(rowConfigKey(c)) && !!seen.add(rowConfigKey(c)));
}

/**
 * Hand pick for rows of n: on software adapters one SIMD vector (8 lanes) per row — each barrier
 * of a wider workgroup switches between all its groups of lanes, and the row reductions were
 * barrier-bound on llvmpipe (norm; softmax 1.9–3.4× and cross entropy 1.4–9.5× faster than the
 * GPU width, timed side by side) —, elsewhere the GPU width. `forced` (a test override): 8 or
 * the GPU width whatever the adapter.
 */
export function rowHandConfig(n: number, profile: DeviceProfile, forced?: 8 | 'gpu'): RowConfig {
  return { WG: forced === 8 || (forced === undefined && profile.software) ? 8 : rowGpuWidth(n) };
}

/**
 * The descriptor of a row-reduction family: rows of `length(g)`, classes `bucket(g)`; `forced`
 * reads the family's test override (none: never forced).
 */
export function rowFamily<G>(name: string, bucket: (g: G) => string, length: (g: G) => number, forced: () => 8 | 'gpu' | undefined = () => undefined): KernelFamily<G, RowConfig> {
  const hand = (g: G, profile: DeviceProfile) => rowHandConfig(length(g), profile, forced());
  return {
    name,
    bucket,
    handPicked: hand,
    candidates: (g, profile) => rowCandidates(hand(g, profile), length(g), profile),
    configKey: rowConfigKey,
    parseConfig: parseRowConfig,
    forced: () => forced() !== undefined,
  };
}
