// The config presets of configs/*.json, imported as modules so they travel with the code
// (bundled apps and registry imports have no configs/ folder next to them).
import covctr from '../../configs/covctr.json' with { type: 'json' };
import mmretinal from '../../configs/mmretinal.json' with { type: 'json' };
import paper from '../../configs/paper.json' with { type: 'json' };
import pgross from '../../configs/pgross.json' with { type: 'json' };
import roco from '../../configs/roco.json' with { type: 'json' };
import tiny from '../../configs/tiny.json' with { type: 'json' };

export const PRESETS = ['tiny', 'covctr', 'mmretinal', 'pgross', 'roco', 'paper'] as const;
export type PresetName = (typeof PRESETS)[number];

const RAW: Record<PresetName, Record<string, unknown>> = { tiny, covctr, mmretinal, pgross, roco, paper };

export function isPreset(name: string): name is PresetName {
  return (PRESETS as readonly string[]).includes(name);
}

/** A copy of a preset's raw fields (vocab_size 0: the vocabulary decides it). */
export function presetConfig(name: string): Record<string, unknown> {
  if (!isPreset(name)) throw new Error(`config preset "${name}" does not exist (have ${PRESETS.join(', ')})`);
  return structuredClone(RAW[name]);
}
