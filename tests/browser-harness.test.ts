// The browser tests' waits (tests/browser-harness.ts): a timeout names the state waited for, the
// budget and what the page showed, also when the page cannot answer (a load that never ends).
import { afterAll, expect, it } from 'vitest';
import { launchChromium, loadWithin, openPage, Pace, waitForState } from './browser-harness.ts';

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
});

it('a wait that times out names its state, its budget and what the page showed; so does a load that never ends', { timeout: 0 }, async () => {
  const ch = await launchChromium();
  cleanups.push(() => ch.close());
  const { page, loadMs } = await openPage(ch.browser, 'data:text/html,<p id="panel" data-state="checking">hi</p><p id="x-status">working</p>', 'harness page');
  expect(loadMs).toBeGreaterThan(0);
  // Met at once: the time it took comes back.
  expect(await waitForState(page, 'the panel to be checking', 5000, () => document.getElementById('panel')!.dataset.state === 'checking')).toBeGreaterThanOrEqual(0);
  await expect(waitForState(page, 'the panel to be ready', 300, () => document.getElementById('panel')!.dataset.state === 'ready'))
    .rejects.toThrow(/^timed out after 0\.3 s waiting for the panel to be ready; the page showed: #panel state=checking; #x-status: "working"$/);
  // A navigation whose request is never answered: the message still comes, within the 5 s bound on reading the page.
  await page.setRequestInterception(true);
  page.on('request', () => undefined);
  await expect(loadWithin(page, 'http://127.0.0.1:9/never', 'a page that never answers to load', 500))
    .rejects.toThrow(/^timed out after 0\.5 s waiting for a page that never answers to load; the page showed: /);
  expect(new Pace(2000, 'x').budget(20)).toBe(40_000);
  expect(new Pace(100, 'x').budget(20)).toBe(10_000); // the floor
});
