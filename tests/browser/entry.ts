// Entry of the browser test page: exposes the kernel suite to puppeteer's page.evaluate.
import { CASES, runSuite, type SuiteResult } from './suite.ts';

declare global {
  interface Window {
    micarSuite?: { names: string[]; run(seed: number, names?: string[]): Promise<SuiteResult> };
  }
}

window.micarSuite = { names: CASES.map((c) => c.name), run: runSuite };
document.getElementById('status')!.textContent = `ready: ${CASES.length} cases, WebGPU ${'gpu' in navigator ? 'present' : 'missing'}`;
