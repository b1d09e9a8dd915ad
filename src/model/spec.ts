// The model's state_dict: every key of the authors' CaptionModel with its shape and role,
// in the original parameter order (SPEC and golden README key table).
import { backboneLayout, type MicarConfig } from './config.ts';

export type EntryKind =
  | 'param' // trained
  | 'bn_stat' // BatchNorm running_mean / running_var
  | 'bn_count' // BatchNorm num_batches_tracked (I64)
  | 'rope_freqs' // nn.Parameter(requires_grad=False)
  | 'pe'; // positional-encoding buffer

export interface Entry {
  name: string;
  shape: number[];
  kind: EntryKind;
  /** Vision-encoder parameters train at v_lr (AdamW group 1). */
  vision: boolean;
  /** How a fresh model initialises it. */
  init: 'xavier' | 'kaiming_conv' | 'linear_default' | 'bias_default' | 'ones' | 'zeros' | 'rope' | 'pe';
  /** fan-in for PyTorch default inits. */
  fanIn?: number;
}

export function stateDictSpec(cfg: MicarConfig): Entry[] {
  const out: Entry[] = [];
  const add = (name: string, shape: number[], kind: EntryKind, init: Entry['init'], fanIn?: number) =>
    out.push({ name, shape, kind, vision: name.startsWith('vis_enc.'), init, fanIn });
  const bn = (p: string, c: number) => {
    add(`${p}.weight`, [c], 'param', 'ones');
    add(`${p}.bias`, [c], 'param', 'zeros');
    add(`${p}.running_mean`, [c], 'bn_stat', 'zeros');
    add(`${p}.running_var`, [c], 'bn_stat', 'ones');
    add(`${p}.num_batches_tracked`, [], 'bn_count', 'zeros');
  };
  // torchvision initialises its own convs (kaiming, fan_out); the FPN/fusion convs keep
  // PyTorch's Conv2d default (uniform ±1/sqrt(fan_in)).
  const conv = (p: string, o: number, i: number, k: number, bias: boolean) => {
    add(`${p}.weight`, [o, i, k, k], 'param', bias ? 'linear_default' : 'kaiming_conv', bias ? i * k * k : o * k * k);
    if (bias) add(`${p}.bias`, [o], 'param', 'bias_default', i * k * k);
  };
  // Backbone (torchvision layout, renamed into vis_enc.layerN).
  const { bottleneck, blocks } = backboneLayout(cfg.backbone);
  const exp = bottleneck ? 4 : 1;
  conv('vis_enc.layer1.0', 64, 3, 7, false);
  bn('vis_enc.layer1.1', 64);
  let inplanes = 64;
  const stageC: number[] = [];
  [64, 128, 256, 512].forEach((planes, s) => {
    for (let j = 0; j < blocks[s]; j++) {
      const stride = j === 0 && s > 0 ? 2 : 1;
      const p = s === 0 ? `vis_enc.layer1.4.${j}` : `vis_enc.layer${s + 1}.0.${j}`;
      if (bottleneck) {
        conv(`${p}.conv1`, planes, inplanes, 1, false);
        bn(`${p}.bn1`, planes);
        conv(`${p}.conv2`, planes, planes, 3, false);
        bn(`${p}.bn2`, planes);
        conv(`${p}.conv3`, planes * exp, planes, 1, false);
        bn(`${p}.bn3`, planes * exp);
      } else {
        conv(`${p}.conv1`, planes, inplanes, 3, false);
        bn(`${p}.bn1`, planes);
        conv(`${p}.conv2`, planes, planes, 3, false);
        bn(`${p}.bn2`, planes);
      }
      if (j === 0 && (stride !== 1 || inplanes !== planes * exp)) {
        conv(`${p}.downsample.0`, planes * exp, inplanes, 1, false);
        bn(`${p}.downsample.1`, planes * exp);
      }
      inplanes = planes * exp;
    }
    stageC.push(inplanes);
  });
  const dv = cfg.d_v, d = cfg.d_model, dl = cfg.d_latent, H = cfg.num_heads, dk = d / H;
  [2, 3, 4, 5].forEach((i, s) => {
    conv(`vis_enc.fpn_c${i}.0`, dv, stageC[s], 1, true);
    bn(`vis_enc.fpn_c${i}.1`, dv);
  });
  conv('vis_enc.fusion.0', dv, dv, 3, true);
  bn('vis_enc.fusion.1', dv);
  // Projection, text embedding.
  add('proj.0.weight', [dv], 'param', 'ones');
  add('proj.1.weight', [d, dv], 'param', 'xavier');
  add('proj.1.bias', [d], 'param', 'bias_default', dv);
  add('text_embs.embedding.weight', [cfg.vocab_size, d], 'param', 'xavier');
  add('text_embs.pe.pe', [1, cfg.text_seq_len, d], 'pe', 'pe');
  const mhla = (p: string) => {
    add(`${p}.qkv_down_norm_up.0.weight`, [3 * dk, d], 'param', 'xavier');
    add(`${p}.qkv_down_norm_up.1.weight`, [3 * dk], 'param', 'ones');
    add(`${p}.qkv_down_norm_up.2.weight`, [3 * dl, 3 * dk], 'param', 'xavier');
    add(`${p}.rope.freqs`, [cfg.qk_rope_dim / 4], 'rope_freqs', 'rope');
    add(`${p}.wo.weight`, [d, dl], 'param', 'xavier');
  };
  const ffn = (p: string) => {
    add(`${p}.w1.weight`, [cfg.d_ff, d], 'param', 'xavier');
    add(`${p}.w2.weight`, [d, cfg.d_ff], 'param', 'xavier');
    add(`${p}.w3.weight`, [cfg.d_ff, d], 'param', 'xavier');
  };
  for (let l = 0; l < cfg.num_layers; l++) {
    const p = `encoder.layers.${l}`;
    add(`${p}.norm_sa.weight`, [d], 'param', 'ones');
    mhla(`${p}.self_attention`);
    add(`${p}.norm_ff.weight`, [d], 'param', 'ones');
    ffn(`${p}.ff`);
  }
  for (let l = 0; l < cfg.num_layers; l++) {
    const p = `decoder.layers.${l}`;
    add(`${p}.norm_sa.weight`, [d], 'param', 'ones');
    mhla(`${p}.self_attention`);
    const g = `${p}.gated_fusion`;
    for (const n of [1, 2, 3]) add(`${g}.norm${n}.weight`, [d], 'param', 'ones');
    add(`${g}.cross_attention.q_down_norm_up.0.weight`, [dk, d], 'param', 'xavier');
    add(`${g}.cross_attention.q_down_norm_up.1.weight`, [dk], 'param', 'ones');
    add(`${g}.cross_attention.q_down_norm_up.2.weight`, [dl, dk], 'param', 'xavier');
    add(`${g}.cross_attention.kv_down_norm_up.0.weight`, [2 * dk, d], 'param', 'xavier');
    add(`${g}.cross_attention.kv_down_norm_up.1.weight`, [2 * dk], 'param', 'ones');
    add(`${g}.cross_attention.kv_down_norm_up.2.weight`, [2 * dl, 2 * dk], 'param', 'xavier');
    add(`${g}.cross_attention.rope.freqs`, [cfg.qk_rope_dim / 4], 'rope_freqs', 'rope');
    add(`${g}.cross_attention.wo.weight`, [d, dl], 'param', 'xavier');
    add(`${g}.gate.0.weight`, [d, 2 * d], 'param', 'xavier');
    add(`${g}.gate.0.bias`, [d], 'param', 'bias_default', 2 * d);
    add(`${g}.gate.2.weight`, [d, d], 'param', 'xavier');
    add(`${g}.gate.2.bias`, [d], 'param', 'bias_default', d);
    add(`${g}.global_proj.weight`, [d, 2 * d], 'param', 'xavier');
    add(`${g}.global_proj.bias`, [d], 'param', 'bias_default', 2 * d);
    add(`${g}.fusion.0.weight`, [d, 3 * d], 'param', 'xavier');
    add(`${g}.fusion.0.bias`, [d], 'param', 'bias_default', 3 * d);
    add(`${g}.fusion.3.weight`, [d, d], 'param', 'xavier');
    add(`${g}.fusion.3.bias`, [d], 'param', 'bias_default', d);
    add(`${p}.norm_moe.weight`, [d], 'param', 'ones');
    for (let e = 0; e < cfg.num_experts; e++) ffn(`${p}.moe.experts.${e}`);
    add(`${p}.moe.gate.gate.weight`, [cfg.num_experts, d], 'param', 'xavier');
  }
  add('gen_logits.0.weight', [d], 'param', 'ones');
  add('gen_logits.1.weight', [cfg.vocab_size, d], 'param', 'xavier');
  return out;
}
