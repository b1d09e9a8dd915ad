// `#include "lib/name"` lines in WGSL templates (optionally ending in a `// comment`): replaced
// by the text of shaders/lib/name.wgsl (itself a template; includes nest) before
// wgsl-preprocessor sees the source. Shared WGSL (thread-id flattening, workgroup reductions,
// strided-copy indexing, the tiled GEMM, …) lives once in shaders/lib/.
//
// A piece is expanded once where it is certainly present already: a later include of it at
// the same place in the `#if` structure, or inside a block of where it was included, becomes a
// comment. In another arm of the same `#if … #elif … #else` chain (kernels that exclude each
// other, as moe.wgsl's) it is expanded again. An include that could be active together with an
// earlier one without being covered by it (separate `#if` blocks; an earlier one inside a
// block, the later one outside it) is an error: include it once, above both.

const INCLUDE_LINE = /^[ \t]*#include[ \t]+"([\w/-]+)"[ \t]*(?:\/\/.*)?$/;
const INCLUDE = new RegExp(INCLUDE_LINE.source, 'gm');
const DIRECTIVE = /^[ \t]*#(if|elif|else|endif)\b/;

/** The names a template includes directly. */
export function includesOf(src: string): string[] {
  return [...src.matchAll(INCLUDE)].map((m) => m[1]);
}

/** Where a line sits in the `#if` structure: per enclosing block, its number and the arm. */
type Place = { block: number; arm: number }[];

interface IncludeState {
  /** Where each piece was expanded so far. */
  seen: Map<string, Place[]>;
  /** Next block number (blocks of pieces are numbered too). */
  blocks: number;
}

/** How an earlier include at `a` relates to one at `b`. */
function relation(a: Place, b: Place): 'covers' | 'exclusive' | 'overlap' {
  for (let i = 0; i < a.length; i++) {
    if (i >= b.length || a[i].block !== b[i].block) return 'overlap';
    if (a[i].arm !== b[i].arm) return 'exclusive';
  }
  return 'covers';
}

/**
 * Expands the includes of `src` (of shader `name`) with `source(piece)` (see above); a cycle,
 * a missing piece or an include that may duplicate an earlier one is an error naming the files.
 */
export function expandIncludes(name: string, src: string, source: (piece: string) => string): string {
  return expand(name, src, source, { seen: new Map(), blocks: 0 }, [name], []);
}

function expand(name: string, src: string, source: (piece: string) => string, state: IncludeState, stack: string[], outer: Place): string {
  const file = stack[stack.length - 1];
  const place: Place = [...outer];
  return src.split('\n').map((line) => {
    const d = DIRECTIVE.exec(line);
    if (d) {
      const top = place.length > outer.length ? place[place.length - 1] : undefined;
      if (d[1] === 'if') place.push({ block: state.blocks++, arm: 0 });
      else if (!top) throw new Error(`shader ${file}.wgsl: #${d[1]} without its #if`);
      else if (d[1] === 'endif') place.pop();
      else place[place.length - 1] = { block: top.block, arm: top.arm + 1 };
      return line;
    }
    const m = INCLUDE_LINE.exec(line);
    if (!m) return line;
    const piece = m[1];
    if (!piece.startsWith('lib/')) throw new Error(`shader ${name}.wgsl: #include "${piece}": included pieces live in shaders/lib/ (name them "lib/…")`);
    if (stack.includes(piece)) throw new Error(`shader ${name}.wgsl: #include cycle ${[...stack, piece].join(' → ')}`);
    const earlier = state.seen.get(piece) ?? [];
    const relations = earlier.map((e) => relation(e, place));
    if (relations.includes('covers')) return `// (${piece} included above)`;
    if (relations.includes('overlap')) {
      throw new Error(`shader ${file}.wgsl: #include "${piece}" may be active together with an earlier include of it in another #if block: include it once, above both`);
    }
    state.seen.set(piece, [...earlier, [...place]]);
    let text: string;
    try {
      text = source(piece);
    } catch (e) {
      throw new Error(`shader ${file}.wgsl: #include "${piece}": ${(e as Error).message}`);
    }
    return `// ---- ${piece} ----\n${expand(name, text, source, state, [...stack, piece], place)}\n// ---- end ${piece} ----`;
  }).join('\n');
}
