// Chephren as an operator uses it, in Debian's Chromium driven by
// playwright-core. Run by tests/tests/browser.rs against a 3-node cluster:
//
//   CHEPHREN_URL  site1's Chephren (the page under test)
//   PEER_CHEPHREN_URL  site2's, which allows no other origin (no CORS flag)
//   API_URL       site1's Cheops API (where operations are sent)
//   TOKEN         the operator token (operations are sent with it)
//   READ_TOKEN    the read token, which the page asks for
//   SITES         the sites, `site1&site2&site3`
//   ARTIFACTS     where screenshots go
//   CHROMIUM      the browser binary
//
// It asks the test to stop a node by printing `STOP <site>` and reading a
// line back; every other line it prints is a log. Every wait is for a
// condition on the page, with a deadline; the page is never reloaded after
// the first load, so whatever appears came through the live stream.

import { createInterface } from 'node:readline';
import path from 'node:path';
import { chromium } from 'playwright-core';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const CHEPHREN_URL = env('CHEPHREN_URL');
const PEER_CHEPHREN_URL = env('PEER_CHEPHREN_URL');
const API_URL = env('API_URL');
const TOKEN = env('TOKEN');
const READ_TOKEN = env('READ_TOKEN');
const SITES = env('SITES');
const ARTIFACTS = env('ARTIFACTS');
const CHROMIUM = env('CHROMIUM');

const SECOND = 1000;
/** Replies of three local sites, replication included. */
const REPLIES = 30 * SECOND;
/** A stopped peer must be seen OFFLINE within this (probes every 1 to 5 s). */
const OFFLINE = 30 * SECOND;

const RESOURCE = 'web-frontend';
const sites = SITES.split('&');
const log = (message) => console.log(`# ${message}`);

const input = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
/** Asks the test to do something only it can, and waits until it is done. */
async function ask(request) {
  console.log(request);
  const answer = await input.next();
  if (answer.done) throw new Error(`no answer to ${request}`);
  return answer.value;
}

// Operations stream their replies until every site answered or the reply
// timeout passed; they are read in the background and cut at the end.
const inFlight = new AbortController();
const sent = [];
async function exec(fields, files = {}) {
  const form = new FormData();
  form.append('sites', SITES);
  for (const [name, value] of Object.entries(fields)) form.append(name, value);
  for (const [name, content] of Object.entries(files)) form.append(name, new Blob([content]), name);
  const response = await fetch(`${API_URL}/exec/${RESOURCE}`, {
    method: 'POST',
    body: form,
    headers: { Authorization: `Bearer ${TOKEN}` },
    signal: inFlight.signal,
  });
  if (response.status !== 200) throw new Error(`/exec answered ${response.status}: ${await response.text()}`);
  sent.push(response.text().catch(() => ''));
  log(`sent ${fields.type}: ${fields.command}`);
}

async function screenshot(page, name) {
  const file = path.join(ARTIFACTS, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  log(`screenshot ${file}`);
}

/** Waits until `count` cells of operation row `row` (1-based) have `status`. */
async function cells(page, row, status, count, timeout = REPLIES) {
  await page.waitForFunction(
    ({ row, status, count }) => {
      const op = document.querySelectorAll('table.matrix tr.op')[row - 1];
      return op && op.querySelectorAll(`button.cell[data-status="${status}"]`).length === count;
    },
    { row, status, count },
    { timeout },
  );
}

/** Waits until the history section lists one row per `expected` entry, in
 * order, row i holding `count` site replies, all with `status`. */
async function history(page, expected, timeout = REPLIES) {
  await page.waitForFunction(
    (expected) => {
      const rows = [...document.querySelectorAll('section.history tr.history-op')];
      return (
        rows.length === expected.length &&
        rows.every((row, i) => {
          const replies = row.querySelectorAll('.reply');
          const matching = row.querySelectorAll(`.reply[data-status="${expected[i].status}"]`);
          return replies.length === expected[i].count && matching.length === expected[i].count;
        })
      );
    },
    expected,
    { timeout },
  );
}

function assert(condition, message) {
  if (!condition) throw new Error(message);
}

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  headless: true,
  args: [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--no-first-run',
  ],
});
try {
  const page = await browser.newPage({ viewport: { width: 1360, height: 860 } });
  const errors = [];
  page.on('pageerror', (error) => errors.push(`page error: ${error.message}`));
  // Chromium itself logs every refused request; the token step expects
  // 401s, so those are not the page's errors.
  const refusal = /the server responded with a status of 401/;
  page.on('console', (message) => {
    if (message.type() === 'error' && !refusal.test(message.text())) {
      errors.push(`console error: ${message.text()}`);
    }
  });
  let loads = 0;
  page.on('load', () => loads++);

  // 0. The node answers nothing without its read token: the page asks for
  // it, refuses a wrong one, and goes live with the right one (no reload).
  await page.goto(CHEPHREN_URL);
  await page.locator('#token-form').getByText('answers only with its read token').waitFor({ timeout: 10 * SECOND });
  await page.locator('#live[data-state="locked"]').waitFor();
  await page.locator('#token-input').fill('not-the-read-token-at-all');
  await page.locator('#token-form button').click();
  await page.locator('#token-form').getByText('refused the token').waitFor({ timeout: 10 * SECOND });
  await page.locator('#token-input').fill(READ_TOKEN);
  await page.locator('#token-form button').click();
  await page.locator('#token-form').waitFor({ state: 'hidden' });
  log('token: asked for, a wrong one refused, the read token accepted');

  // 1. The cluster: every site online, seen live from site1.
  await page.locator('#live[data-state="live"]').waitFor({ timeout: 10 * SECOND });
  await page.waitForFunction(
    (n) => document.querySelectorAll('article.site[data-state="online"]').length === n,
    sites.length,
    { timeout: OFFLINE },
  );
  for (const site of sites) {
    const shown = await page.locator(`article.site[data-site="${site}"][data-state="online"]`).count();
    assert(shown === 1, `${site} is not shown online`);
  }
  log(`cluster view: ${sites.length} sites online`);
  await screenshot(page, '1-cluster');

  // 2. The resource list, empty, then the resource appearing as it is created.
  await page.getByRole('link', { name: 'Resources', exact: true }).click();
  await page.locator('.empty').getByText('No resource lives on this node yet').waitFor();
  await exec(
    {
      type: 'deploy',
      command: 'echo "web-frontend v1.4.2 deployed"',
      config: JSON.stringify({
        ResolutionMatrix: [
          { Before: 'deploy', After: 'deploy', Result: 'take-one' },
          { Before: 'deploy', After: 'scale', Result: 'take-both-keep-order' },
        ],
      }),
    },
  );
  const row = page.locator(`tr[data-resource="${RESOURCE}"]`);
  await row.waitFor({ timeout: REPLIES });
  await page.locator(`tr[data-resource="${RESOURCE}"][data-converged="true"]`).waitFor({ timeout: REPLIES });
  log('resource list: the new resource appeared and converged');
  await screenshot(page, '2-resources');

  // 3. The resource: each operation sent appears with every site's reply.
  await row.getByRole('link', { name: RESOURCE }).click();
  await cells(page, 1, 'OK', sites.length);
  await exec({ type: 'scale', command: 'cat {replicas.conf}' }, { 'replicas.conf': 'replicas: 3\nzone: edge\n' });
  await cells(page, 2, 'OK', sites.length);
  await exec({ type: 'check', command: 'echo "disk usage 93% on /var (limit 90%)" >&2; exit 1' });
  await cells(page, 3, 'KO', sites.length);
  await page.locator('.badge[data-converged="true"]').waitFor();
  log('resource view: three operations, every site replied, without reload');
  // The history below: the same operations, oldest first, each with every
  // site's reply status.
  await history(page, ['OK', 'OK', 'KO'].map((status) => ({ status, count: sites.length })));
  log('resource view: the history lists the three operations with every reply');

  // The output of a cell, on click.
  await page.locator(`tr.op >> nth=1 >> button.cell[data-site="${sites[1]}"]`).click();
  await page.locator('.output pre.out').getByText('replicas: 3').waitFor();
  // Once every site ran it the block keeps only a pruned copy of the
  // operation (issue 16): its file is named in the history.
  await page.locator('tr.history-op >> nth=1 >> .file', { hasText: 'replicas.conf' }).waitFor();
  await screenshot(page, '3-resource');

  // 4. A node stops: the cluster view turns it OFFLINE.
  const stopped = sites[sites.length - 1];
  await page.getByRole('link', { name: 'Cluster', exact: true }).click();
  await page.locator(`article.site[data-site="${stopped}"][data-state="online"]`).waitFor();
  // The node's changes feed, live: the last operation completed everywhere.
  await page
    .locator(`table.feed-events tr[data-type="operation-complete"][data-of="${RESOURCE}"]`)
    .first()
    .waitFor({ timeout: REPLIES });
  assert((await ask(`STOP ${stopped}`)) === 'stopped', `the test did not stop ${stopped}`);
  await page.locator(`article.site[data-site="${stopped}"][data-state="offline"]`).waitFor({ timeout: OFFLINE });
  const others = await page.locator('article.site[data-state="online"]').count();
  assert(others === sites.length - 1, `expected ${sites.length - 1} sites still online, saw ${others}`);
  log(`cluster view: ${stopped} OFFLINE`);
  await screenshot(page, '4-cluster-offline');

  // 5. An operation now waits on the stopped site: pending there, marked offline.
  await page.getByRole('link', { name: 'Resources', exact: true }).click();
  await row.getByRole('link', { name: RESOURCE }).click();
  await cells(page, 3, 'KO', sites.length);
  await exec({ type: 'scale', command: 'echo "scaled to 5 replicas"' });
  await cells(page, 4, 'OK', sites.length - 1);
  await cells(page, 4, 'PENDING', 1);
  await page.locator(`tr.op >> nth=3 >> button.cell[data-site="${stopped}"]`).getByText('site offline').waitFor();
  await page.locator('.badge[data-converged="false"]').waitFor();
  await history(page, [
    ...['OK', 'OK', 'KO'].map((status) => ({ status, count: sites.length })),
    { status: 'OK', count: sites.length - 1 },
  ]);
  log(`resource view: ${stopped} pending while offline, not in the history's replies`);
  await screenshot(page, '5-resource-pending');

  assert(loads === 1, `the page loaded ${loads} times: updates must come without reload`);
  assert(errors.length === 0, `the page reported errors:\n${errors.join('\n')}`);

  // 6. A link carrying the token in its fragment (as `cluster up` prints
  // it) opens the node at once, and the token leaves the address bar.
  const linked = await browser.newPage({ viewport: { width: 1360, height: 500 } });
  await linked.goto(`${CHEPHREN_URL}/#token=${encodeURIComponent(READ_TOKEN)}`);
  await linked.locator('#live[data-state="live"]').waitFor({ timeout: 10 * SECOND });
  await linked.locator(`article.site[data-site="${sites[0]}"]`).waitFor();
  assert(!linked.url().includes(READ_TOKEN), `the token stayed in the address: ${linked.url()}`);
  assert(await linked.locator('#token-form').isHidden(), 'the linked page asked for a token');
  log('#token= link: live at once, the token gone from the address bar');

  // 7. Pointed at a node that does not allow this origin, the UI says why.
  const elsewhere = await browser.newPage({ viewport: { width: 1360, height: 500 } });
  await elsewhere.goto(`${CHEPHREN_URL}/?node=${encodeURIComponent(PEER_CHEPHREN_URL)}`);
  await elsewhere.locator('#problem').getByText('--chephren-cors-origin').waitFor();
  log('?node= without CORS: the page explains what to configure');
  console.log('PASS');
} finally {
  inFlight.abort();
  await Promise.allSettled(sent);
  await browser.close();
}
process.exit(0);
