// Drives Debian's Chromium through Maildrop's web page, for e2e/tests/browser.rs.
//
//   node page-test.mjs --gateway http://127.0.0.1:PORT --remote http://127.0.0.1:PORT2 --shots DIR
//
// The Rust test owns the world (the pipeline, the "remote" host that counts requests, the SMTP
// client). This script only acts as a reader would and reports what it saw. The two talk in JSON
// lines: the script writes `{"need":"send","mailbox":…,"kind":…}` or `{"need":"remote"}` on stdout
// and reads the answer from stdin; `{"log":…}` lines are progress; the last line is
// `{"result":{…}}` (or `{"error":…}`). Facts go in the result; the Rust test decides.

import { createInterface } from 'node:readline';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const args = Object.fromEntries(
  process.argv.slice(2).reduce((pairs, a, i, all) => (a.startsWith('--') ? [...pairs, [a.slice(2), all[i + 1]]] : pairs), []),
);
const GATEWAY = args.gateway;
const REMOTE = args.remote;
const SHOTS = args.shots;
const CHROMIUM = args.chromium || '/usr/bin/chromium';
const TIMEOUT = 30000;

const say = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);
const log = (msg) => say({ log: msg });

// Answers from the Rust side arrive one JSON line per question, in order.
const answers = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
async function ask(question) {
  say(question);
  const { value, done } = await answers.next();
  if (done) throw new Error(`no answer to ${JSON.stringify(question)}`);
  return JSON.parse(value);
}

const result = { screenshots: [] };

async function shot(page, name) {
  const path = join(SHOTS, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  result.screenshots.push(path);
}

/** Light, dark and a 390-px-wide phone (dark is the same layout, so the phone is light only). */
async function shots(page, name) {
  const size = page.viewportSize();
  for (const scheme of ['light', 'dark']) {
    await page.emulateMedia({ colorScheme: scheme });
    await shot(page, `${name}-${scheme}`);
  }
  await page.emulateMedia({ colorScheme: 'light' });
  await page.setViewportSize({ width: 390, height: 844 });
  await shot(page, `${name}-phone`);
  await page.setViewportSize(size);
}

/** Controls without an accessible name, as Chromium's accessibility tree computes names. */
async function unnamedControls(page) {
  const cdp = await page.context().newCDPSession(page);
  const { nodes } = await cdp.send('Accessibility.getFullAXTree');
  await cdp.detach();
  const roles = new Set(['button', 'link', 'textbox', 'searchbox', 'tab', 'combobox', 'checkbox', 'Iframe']);
  return nodes
    .filter((n) => !n.ignored && roles.has(n.role?.value) && !String(n.name?.value ?? '').trim())
    .map((n) => n.role.value);
}

async function main() {
  mkdirSync(SHOTS, { recursive: true });
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run'],
  });
  const context = await browser.newContext({ viewport: { width: 1200, height: 800 }, colorScheme: 'light' });
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);

  // Everything the browser does, from every frame.
  const requests = [];
  const consoleMessages = [];
  const pageErrors = [];
  let setCookie = false;
  // Requests that got an answer; those the frame's policy blocked fail without leaving the browser.
  context.on('requestfinished', (r) => requests.push({ url: r.url(), type: r.resourceType() }));
  const blocked = [];
  context.on('requestfailed', (r) => blocked.push({ url: r.url(), error: r.failure()?.errorText }));
  context.on('response', async (r) => {
    if ((await r.allHeaders())['set-cookie']) setCookie = true;
  });
  page.on('console', (m) => consoleMessages.push({ type: m.type(), text: m.text() }));
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  page.on('dialog', (d) => d.accept());

  // Home: pick a random name and go.
  const home = await page.goto(GATEWAY);
  const h = await home.allHeaders();
  result.headers = { x_frame_options: h['x-frame-options'], nosniff: h['x-content-type-options'], csp: h['content-security-policy'] };
  await page.locator('#home').waitFor();
  await page.getByRole('button', { name: 'Random' }).click();
  const mailbox = await page.locator('#home-name').inputValue();
  result.random_name = mailbox;
  await page.getByRole('button', { name: 'Go' }).click();
  await page.waitForURL(`**/inbox/${mailbox}`);
  await page.locator('#conn[data-state="live"]').waitFor();
  result.inbox_path = new URL(page.url()).pathname;
  await page.locator('#alias-row').waitFor();
  result.alias = await page.locator('#alias').textContent();
  result.inbox_address = await page.locator('#inbox-addr').textContent();

  // A message arrives while the page is open: it must appear without a reload.
  await page.evaluate(() => { window.__sameDocument = true; });
  log(`inbox ${mailbox} is live; asking for the hostile message`);
  await ask({ need: 'send', mailbox, kind: 'hostile' });
  const row = page.locator('#list li.msg').first();
  await row.waitFor();
  result.appeared_without_reload = await page.evaluate(() => window.__sameDocument === true);
  result.row_text = await row.innerText();
  result.unread_before_open = await row.evaluate((li) => li.classList.contains('unread'));
  result.title_with_unread = await page.title();
  result.unnamed_on_inbox = await unnamedControls(page);
  await shots(page, 'inbox');

  // Open it with the keyboard: j highlights the first row, Enter opens it.
  await page.locator('body').click({ position: { x: 5, y: 300 } });
  await page.keyboard.press('j');
  await page.keyboard.press('Enter');
  await page.waitForURL(`**/inbox/${mailbox}/*`);
  await page.locator('#m-subject', { hasText: 'Hostile' }).waitFor();
  const frameEl = page.locator('#m-html');
  await frameEl.waitFor();
  const frame = page.frameLocator('#m-html');
  await frame.locator('#styled, .brand').first().waitFor();
  // The remote image is in the document, blocked by its policy: give it every chance to load.
  await page.waitForTimeout(500);
  result.remote_before_allow = (await ask({ need: 'remote' })).requests;
  result.remote_button = await page.locator('#remote-load').isVisible();
  result.frame = await frame.locator('body').evaluate((body) => ({
    scripts: body.ownerDocument.querySelectorAll('script').length,
    handlers: [...body.ownerDocument.querySelectorAll('*')].filter((e) => [...e.attributes].some((a) => a.name.startsWith('on'))).length,
    brand_color: getComputedStyle(body.querySelector('.brand')).color,
    link_rel: body.querySelector('a')?.getAttribute('rel'),
    link_target: body.querySelector('a')?.getAttribute('target'),
    remote_img_loaded: body.querySelector('img[alt="remote"]')?.naturalWidth > 0,
  }));
  result.frame_sandbox = await frameEl.getAttribute('sandbox');
  result.unnamed_on_message = await unnamedControls(page);
  await shots(page, 'message');
  result.requests_before_allow = requests.map((r) => r.url);

  // The reader allows remote content for this message.
  await page.getByRole('button', { name: 'Load remote images' }).click();
  result.remote_img_loaded_after_allow = false;
  for (let i = 0; i < 100 && !result.remote_img_loaded_after_allow; i++) {
    await page.waitForTimeout(100);
    result.remote_img_loaded_after_allow = await frame.locator('img[alt="remote"]')
      .evaluate((img) => img.complete && img.naturalWidth > 0).catch(() => false);
  }
  // The CSS background comes with layout: give it a moment, then read the remote host's log.
  for (let i = 0; i < 50; i++) {
    result.remote_after_allow = (await ask({ need: 'remote' })).requests;
    if (result.remote_after_allow.includes('/bg.png')) break;
    await page.waitForTimeout(100);
  }
  await shots(page, 'message-remote');

  // The other views of the message.
  await page.getByRole('tab', { name: 'Text' }).click();
  result.text_view = await page.locator('#m-text').innerText();
  await page.getByRole('tab', { name: 'Details' }).click();
  result.details_view = await page.locator('#panel-meta').innerText();
  await shot(page, 'message-details-light');
  await page.getByRole('tab', { name: 'Source' }).click();
  await page.locator('#m-raw-text', { hasText: 'Subject:' }).waitFor();
  result.source_view = (await page.locator('#m-raw-text').innerText()).slice(0, 2000);
  result.eml_href = await page.getByRole('link', { name: 'Download .eml' }).getAttribute('href');
  result.attachment_links = await page.locator('#m-atts a').evaluateAll((as) => as.map((a) => ({ href: a.getAttribute('href'), name: a.textContent })));

  // Back to the list (Escape): the message is read now.
  await page.keyboard.press('Escape');
  await page.waitForURL(`**/inbox/${mailbox}`);
  result.unread_after_open = await page.locator('#list li.msg').first().evaluate((li) => li.classList.contains('unread'));

  // Delete it from the message view.
  await page.locator('#list li.msg a.open').first().click();
  await page.locator('#m-subject', { hasText: 'Hostile' }).waitFor();
  await page.getByRole('button', { name: 'Delete', exact: true }).click();
  await page.waitForURL(`**/inbox/${mailbox}`);
  await page.locator('#list li.msg').first().waitFor({ state: 'detached' });
  result.deleted_from_message = (await page.locator('#list li.msg').count()) === 0;

  // Two more: Del deletes the highlighted one, "Empty inbox" the rest.
  await ask({ need: 'send', mailbox, kind: 'plain' });
  await page.locator('#list li.msg').nth(1).waitFor();
  await page.locator('#inbox h1').click();
  await page.keyboard.press('j');
  await page.keyboard.press('Delete');
  await page.waitForFunction(() => document.querySelectorAll('#list li.msg').length === 1);
  result.deleted_by_key = true;
  await page.getByRole('button', { name: 'Empty inbox' }).click();
  await page.locator('#inbox-empty').waitFor();
  result.emptied = (await page.locator('#list li.msg').count()) === 0;
  await shots(page, 'inbox-empty');

  // Home, with counters (and the chart, when the stats carry a time series).
  await page.locator('.logo').click();
  // Three messages were stored: the live counter gets there, and the chart follows.
  await page.locator('#stats', { hasText: '3 messages saved' }).waitFor();
  await page.locator('#chart-sum', { hasText: '3 received' }).waitFor();
  result.stats_text = await page.locator('#stats').innerText();
  result.chart_shown = await page.locator('#chart').isVisible();
  result.unnamed_on_home = await unnamedControls(page);
  await shots(page, 'home');

  // `/` jumps to another inbox from anywhere.
  await page.keyboard.press('/');
  await page.keyboard.type('Jumped.Here');
  await page.keyboard.press('Enter');
  await page.waitForURL('**/inbox/jumped.here');
  result.jumped_to = new URL(page.url()).pathname;

  result.console = consoleMessages;
  result.page_errors = pageErrors;
  result.requests = requests;
  result.blocked = blocked;
  result.cookies = (await context.cookies()).length;
  result.document_cookie = await page.evaluate(() => document.cookie);
  result.set_cookie_seen = setCookie;
  await browser.close();
  say({ result });
}

main().then(
  () => process.exit(0),
  (e) => {
    say({ error: String(e?.stack || e) });
    process.exit(1);
  },
);
