// `#include "lib/name"` lines in WGSL templates (optionally ending in a `// comment`): replaced
// by the text of shaders/lib/name.wgsl (itself a template; includes nest), each piece at most
// once per shader, before wgsl-preprocessor sees the source. Shared WGSL (thread-id
// flattening, workgroup reductions, strided-copy indexing, …) lives once in shaders/lib/.

const INCLUDE = /^[ \t]*#include[ \t]+"([\w/-]+)"[ \t]*(?:\/\/.*)?$/gm;

/** The names a template includes directly. */
export function includesOf(src: string): string[] {
  return [...src.matchAll(INCLUDE)].map((m) => m[1]);
}

/**
 * Expands the includes of `src` (of shader `name`) with `source(piece)`; a piece already
 * included earlier becomes empty, a cycle or a missing piece is an error naming both files.
 */
export function expandIncludes(name: string, src: string, source: (piece: string) => string, seen = new Set<string>(), stack: string[] = [name]): string {
  return src.replace(INCLUDE, (_line, piece: string) => {
    if (!piece.startsWith('lib/')) throw new Error(`shader ${name}.wgsl: #include "${piece}": included pieces live in shaders/lib/ (name them "lib/…")`);
    if (stack.includes(piece)) throw new Error(`shader ${name}.wgsl: #include cycle ${[...stack, piece].join(' → ')}`);
    if (seen.has(piece)) return `// (${piece} included above)`;
    seen.add(piece);
    let text: string;
    try {
      text = source(piece);
    } catch (e) {
      throw new Error(`shader ${stack[stack.length - 1]}.wgsl: #include "${piece}": ${(e as Error).message}`);
    }
    return `// ---- ${piece} ----\n${expandIncludes(name, text, source, seen, [...stack, piece])}\n// ---- end ${piece} ----`;
  });
}
