// The browser test of idnode's resolver page and operator dashboard: a real Chromium (the Debian
// package; Playwright downloads no browser here) drives the pages of a running node.
//
//   node ui.e2e.mjs --base http://127.0.0.1:PORT --artifacts DIR --handle ID_FOUND --xss ID_XSS
//                   --missing ID_MISSING --referred ID_REFERRED --landing-text TEXT
//
// tests/integration/ui_test.py starts the node (and the landing page the found identifier's URL
// value points to, whose body holds TEXT), runs this script, and starts idbench's load when it
// prints DASHBOARD_OPEN. One line per check, "ok - <what>" or "not ok - <what>: <detail>"; lines
// starting with "#" are diagnostics. Exit status 0 only when every check passed. Every step is
// bounded in time, and the whole script by OVERALL_MS. Screenshots go to DIR (resolver-found.png,
// resolver-found-dark.png, status.png, status-dark.png; failure-*.png when a check fails).
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

// playwright-core is installed outside the source tree (docker/install-deps.sh: build/e2e), where
// IDNODE_E2E_MODULES points; by default, the node_modules beside this script.
const modules = process.env.IDNODE_E2E_MODULES || path.join(import.meta.dirname ?? '.', 'node_modules');
const { chromium } = await import(pathToFileURL(path.join(modules, 'playwright-core', 'index.mjs')).href);

const OVERALL_MS = Number(process.env.E2E_TIMEOUT_MS || 90_000);
const STEP_MS = 10_000; // one action, one wait
const NAV_MS = 15_000; // one page load
const LOAD_WAIT_MS = 30_000; // the dashboard's numbers changing under idbench's load
const MAX_TABS = 12; // Tab presses from the page's start to the search box

function parseArgs(argv) {
  const want = ['base', 'artifacts', 'handle', 'xss', 'missing', 'referred', 'landing-text'];
  const args = {};
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, '');
    if (!want.includes(key) || i + 1 >= argv.length) usage(`unknown or incomplete argument ${argv[i]}`);
    args[key] = argv[i + 1];
  }
  for (const k of want) if (!args[k]) usage(`missing --${k}`);
  args.base = args.base.replace(/\/+$/, '');
  return args;
}

function usage(why) {
  console.error(`ui.e2e.mjs: ${why}\nusage: node ui.e2e.mjs --base URL --artifacts DIR --handle ID ` +
                '--xss ID --missing ID --referred ID --landing-text TEXT');
  process.exit(2);
}

const A = parseArgs(process.argv.slice(2));
mkdirSync(A.artifacts, { recursive: true });

let browser = null;
let failures = 0;
let passes = 0;

const overall = setTimeout(() => {
  console.log(`not ok - the whole run: still running after ${OVERALL_MS / 1000} s`);
  // At once, before another check reports on a browser going away: Chromium is a child of this
  // process, which Playwright kills on exit.
  process.exit(1);
}, OVERALL_MS);

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function oneLine(text) {
  const s = String(text ?? '').split('\n').map((l) => l.trim()).filter(Boolean);
  // Playwright's errors carry a call log after the first line; its first lines say enough.
  const out = s.slice(0, 3).join(' | ');
  return out.length > 400 ? out.slice(0, 400) + '…' : out;
}

function assert(condition, message) {
  if (!condition) throw new Error(message);
}

// A promise that rejects after `ms` (for page.evaluate and the like, which have no timeout).
function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms / 1000} s`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

let page = null; // the page the checks drive

// Runs one check: "ok - what (note)" when fn resolves (to an optional note), else "not ok" and a
// screenshot of the page as it was. Bounded by `ms`.
async function check(what, fn, ms = 2 * STEP_MS) {
  try {
    const note = await withTimeout(Promise.resolve().then(fn), ms, what);
    passes++;
    console.log(`ok - ${what}${note ? ` (${note})` : ''}`);
    return true;
  } catch (e) {
    failures++;
    console.log(`not ok - ${what}: ${oneLine(e && e.message ? e.message : e)}`);
    if (page) {
      const name = 'failure-' + what.replace(/[^A-Za-z0-9]+/g, '-').replace(/^-|-$/g, '').slice(0, 60) + '.png';
      await withTimeout(page.screenshot({ path: path.join(A.artifacts, name), fullPage: true }), 5000, 'screenshot')
        .then(() => console.log(`# page at the failure: ${path.join(A.artifacts, name)}`))
        .catch(() => {});
    }
    return false;
  }
}

// The path of an identifier on the node: each segment percent-encoded, the slashes kept.
function handlePath(id) {
  return '/' + id.split('/').map(encodeURIComponent).join('/');
}

async function goto(url, expectStatus) {
  const response = await page.goto(url, { waitUntil: 'load', timeout: NAV_MS });
  assert(response, `no response for ${url}`);
  if (expectStatus !== undefined) {
    assert(response.status() === expectStatus, `${url} answered HTTP ${response.status()}, expected ${expectStatus}`);
  }
  return response;
}

async function text(selector) {
  return (await page.locator(selector).first().textContent({ timeout: STEP_MS })) ?? '';
}

// WCAG 2 relative luminance and contrast ratio of [r, g, b] (0..255).
function luminance([r, g, b]) {
  const lin = (c) => {
    const s = c / 255;
    return s <= 0.03928 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
  };
  return 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b);
}

function contrast(a, b) {
  const [hi, lo] = [luminance(a), luminance(b)].sort((x, y) => y - x);
  return (hi + 0.05) / (lo + 0.05);
}

// `top` (r, g, b, alpha 0..1) over the opaque `bottom`.
function over(top, bottom) {
  const a = top[3];
  return [0, 1, 2].map((i) => top[i] * a + bottom[i] * (1 - a));
}

// The body's text and background colours as the reader sees them, whatever CSS colour syntax the
// stylesheet used (a 1x1 canvas turns any computed colour into RGBA). A transparent body shows the
// root's background, and a transparent root the canvas (white, or Chromium's #121212 when dark).
async function bodyColours(scheme) {
  const c = await withTimeout(page.evaluate(() => {
    const ctx = document.createElement('canvas').getContext('2d', { willReadFrequently: true });
    const rgba = (css) => {
      ctx.clearRect(0, 0, 1, 1);
      ctx.fillStyle = '#000';
      ctx.fillStyle = css;
      ctx.fillRect(0, 0, 1, 1);
      const d = ctx.getImageData(0, 0, 1, 1).data;
      return [d[0], d[1], d[2], d[3] / 255];
    };
    const body = getComputedStyle(document.body);
    const root = getComputedStyle(document.documentElement);
    return {
      text: rgba(body.color), textCss: body.color,
      body: rgba(body.backgroundColor), bodyCss: body.backgroundColor,
      root: rgba(root.backgroundColor),
    };
  }), STEP_MS, 'reading the computed colours');
  const canvas = scheme === 'dark' ? [18, 18, 18] : [255, 255, 255];
  const rootBg = over(c.root, canvas);
  const bg = over(c.body, rootBg);
  const fg = over(c.text, bg);
  return { fg, bg, textCss: c.textCss, bodyCss: c.bodyCss, bodyOpaque: c.body[3] === 1 };
}

function rgbText(c) {
  return `rgb(${c.map((x) => Math.round(x)).join(', ')})`;
}

// "1,234.5", "1 234", "2.0k"…: the number a person reads (NaN when there is none).
function numberIn(s) {
  return parseFloat(String(s).replace(/[,\s\u00a0\u202f]/g, ''));
}

async function main() {
  const base = A.base;
  browser = await withTimeout(chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic',
           '--no-first-run', '--disable-component-update', '--disable-sync'],
    headless: true,
    timeout: 30_000,
  }), 35_000, 'starting Chromium');
  console.log(`# ${browser.browserType().name()} ${browser.version()}`);
  // A fixed locale and a time zone away from UTC: local times differ visibly from the ISO ones.
  const context = await browser.newContext({
    locale: 'en-US', timezoneId: 'Asia/Shanghai', viewport: { width: 1280, height: 900 },
  });
  let clipboardGranted = '';
  try {
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: base });
  } catch (e) {
    clipboardGranted = oneLine(e.message);
  }
  page = await context.newPage();
  page.setDefaultTimeout(STEP_MS);
  page.setDefaultNavigationTimeout(NAV_MS);
  const dialogs = [];
  page.on('dialog', (d) => {
    dialogs.push(`${d.type()}: ${d.message()} at ${page.url()}`);
    d.dismiss().catch(() => {});
  });
  page.on('console', (m) => {
    if (m.type() !== 'error' && m.type() !== 'warning') return;
    // A page answered 404 or 400 on purpose, and the favicon no node serves, are no news.
    const source = m.location().url || '';
    if (/^Failed to load resource/.test(m.text()) && !source.includes('/ui/assets/') && !source.includes('/api/')) return;
    console.log(`# console ${m.type()} at ${page.url()}: ${oneLine(m.text())}${source ? ` (${source})` : ''}`);
  });
  page.on('pageerror', (e) => console.log(`# page error at ${page.url()}: ${oneLine(e.message)}`));

  // a. The resolver page, by keyboard.
  await check('resolver page: form#search with label[for=q] and input#q[name=id]', async () => {
    await goto(base + '/', 200);
    assert(await page.locator('form#search').count() === 1, 'no form#search');
    assert(await page.locator('form#search label[for="q"]').count() === 1, 'no label[for=q] in form#search');
    assert(await page.locator('form#search input#q[name="id"]').count() === 1, 'no input#q[name=id] in form#search');
  });

  const foundUrlOk = await check('keyboard: Tab from the page start reaches #q after the skip link; Enter resolves', async () => {
    await goto(base + '/', 200);
    const presses = [];
    let first = null;
    for (let i = 0; i < MAX_TABS; i++) {
      await page.keyboard.press('Tab');
      const focused = await page.evaluate(() => {
        const el = document.activeElement;
        if (!el || el === document.body) return 'body';
        return el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + (el.className ? '.' + String(el.className).split(/\s+/).join('.') : '');
      });
      presses.push(focused);
      if (first === null) first = focused;
      if (focused.startsWith('input#q')) break;
    }
    assert(first && first.startsWith('a') && first.split('.').includes('skip'), `the first Tab focused ${first}, not a.skip`);
    assert(presses[presses.length - 1].startsWith('input#q'), `#q not focused after ${presses.length} Tabs: ${presses.join(' → ')}`);
    await page.keyboard.type(A.handle);
    await Promise.all([
      page.waitForURL((u) => u.searchParams.has('id'), { timeout: NAV_MS, waitUntil: 'load' }),
      page.keyboard.press('Enter'),
    ]);
    const u = new URL(page.url());
    assert(u.pathname === '/', `the search went to ${u.pathname}, not /`);
    assert(u.searchParams.get('id') === A.handle, `?id= is ${u.searchParams.get('id')}, not ${A.handle}`);
    return `${presses.length} Tabs: ${presses.join(' → ')}; ${u.pathname}${u.search}`;
  });
  if (!foundUrlOk) {
    // The checks below read the found page: reach it without the keyboard.
    await goto(`${base}/?id=${encodeURIComponent(A.handle)}`).catch(() => {});
  }

  await check('found: table#values visible, its caption names the handle, >= 3 rows', async () => {
    await page.locator('table#values').waitFor({ state: 'visible' });
    const caption = await text('table#values caption');
    assert(caption.includes(A.handle), `caption "${caption}" lacks ${A.handle}`);
    const rows = await page.locator('table#values tbody tr').count();
    assert(rows >= 3, `${rows} rows`);
    return `${rows} rows`;
  });

  const urlRow = page.locator('table#values tbody tr').filter({ has: page.locator('td.type', { hasText: /^\s*URL\s*$/ }) });
  await check('found: the URL value is a.value-link to http://127.0.0.1…', async () => {
    const href = await urlRow.first().locator('a.value-link').first().getAttribute('href');
    assert(href && href.startsWith('http://127.0.0.1'), `href ${href}`);
    return href;
  });

  await check('found: time[datetime] shown in local time by resolver.js', async () => {
    const count = await page.locator('time[datetime]').count();
    assert(count >= 1, 'no time[datetime] element');
    await page.waitForFunction(() => [...document.querySelectorAll('time[datetime]')]
      .every((el) => el.textContent.trim() !== '' && el.textContent !== el.getAttribute('datetime')), null, { timeout: STEP_MS })
      .catch(async () => {
        const same = await page.evaluate(() => [...document.querySelectorAll('time[datetime]')]
          .filter((el) => el.textContent === el.getAttribute('datetime')).map((el) => el.textContent));
        throw new Error(`${same.length} of ${count} still read as their datetime attribute: ${same.slice(0, 2).join(', ')}`);
      });
    const sample = await page.locator('time[datetime]').first().evaluate((el) => `${el.getAttribute('datetime')} → ${el.textContent}`);
    return `${count} elements; ${sample}`;
  });

  await check('found: td.ttl holds seconds', async () => {
    const ttls = await page.locator('table#values td.ttl').allTextContents();
    assert(ttls.length >= 1, 'no td.ttl');
    const bad = ttls.filter((t) => !t.includes('s'));
    assert(bad.length === 0, `td.ttl without "s": ${bad.join(' | ')}`);
    return ttls[0].trim();
  });

  await check('found: "Copy as JSON" copies the record', async () => {
    const button = page.locator('button#copy-json');
    await button.waitFor({ state: 'visible', timeout: STEP_MS });
    const pre = (await page.locator('pre#record-json').textContent()) ?? '';
    let shown;
    try {
      shown = JSON.parse(pre);
    } catch (e) {
      throw new Error(`pre#record-json is not JSON: ${e.message}`);
    }
    const verify = (j, where) => {
      assert(j && j.responseCode === 1, `${where}: responseCode ${j && j.responseCode}`);
      assert(j.handle === A.handle, `${where}: handle ${j.handle}`);
      assert(Array.isArray(j.values) && j.values.length > 0, `${where}: no values`);
    };
    verify(shown, 'pre#record-json');
    await button.click();
    await page.waitForFunction(() => (document.querySelector('#copy-status')?.textContent ?? '').trim() !== '', null, { timeout: STEP_MS })
      .catch(() => { throw new Error('#copy-status stayed empty after the click'); });
    const status = (await text('#copy-status')).trim();
    let copied = null;
    let why = clipboardGranted ? `permissions not granted: ${clipboardGranted}` : '';
    if (!clipboardGranted) {
      try {
        copied = await withTimeout(page.evaluate(() => navigator.clipboard.readText()), 5000, 'navigator.clipboard.readText()');
      } catch (e) {
        why = oneLine(e.message);
      }
    }
    if (copied !== null) {
      let j;
      try {
        j = JSON.parse(copied);
      } catch (e) {
        throw new Error(`the clipboard holds no JSON (${e.message}): ${copied.slice(0, 80)}`);
      }
      verify(j, 'clipboard');
      return `read back from the clipboard, ${j.values.length} values; #copy-status "${status}"`;
    }
    return `fallback: the clipboard could not be read headless (${why}); #copy-status "${status}", pre#record-json is the JSON`;
  });

  await check('found: screenshots, light and dark', async () => {
    await page.emulateMedia({ colorScheme: 'light' });
    const light = path.join(A.artifacts, 'resolver-found.png');
    await page.screenshot({ path: light, fullPage: true, timeout: STEP_MS });
    await page.emulateMedia({ colorScheme: 'dark' });
    const dark = path.join(A.artifacts, 'resolver-found-dark.png');
    await page.screenshot({ path: dark, fullPage: true, timeout: STEP_MS });
    await page.emulateMedia({ colorScheme: 'light' });
    return `${light}, ${dark}`;
  });

  // b. The URL value's link.
  await check('found: following the URL value reaches the landing page', async () => {
    if (!new URL(page.url()).searchParams.has('id')) await goto(`${base}/?id=${encodeURIComponent(A.handle)}`, 200);
    const link = urlRow.first().locator('a.value-link').first();
    const href = await link.getAttribute('href');
    await Promise.all([
      page.waitForURL((u) => u.href.startsWith(href), { timeout: NAV_MS, waitUntil: 'load' }),
      link.click(),
    ]);
    const body = (await page.locator('body').innerText({ timeout: STEP_MS })) ?? '';
    assert(body.includes(A['landing-text']), `the page at ${page.url()} does not say "${A['landing-text']}": ${body.slice(0, 120)}`);
    return page.url();
  });

  // c. Not found, by address and by the search box.
  const notFoundMessage = async () => {
    const message = page.locator('#message[data-outcome="not-found"]');
    await message.waitFor({ state: 'visible' });
    const t = (await message.textContent()) ?? '';
    assert(t.includes(A.missing), `#message says "${oneLine(t)}", not ${A.missing}`);
  };
  await check(`not found: ${handlePath(A.missing)}?noredirect is 404 with #message[data-outcome=not-found]`, async () => {
    await goto(`${base}${handlePath(A.missing)}?noredirect`, 404);
    await notFoundMessage();
  });

  await check('not found: the search box shows the same message', async () => {
    await goto(base + '/', 200);
    await page.locator('#q').fill(A.missing);
    const [response] = await Promise.all([
      page.waitForResponse((r) => r.request().isNavigationRequest() && new URL(r.url()).searchParams.has('id'), { timeout: NAV_MS }),
      page.locator('form#search button[type="submit"]').click(),
    ]);
    await page.waitForLoadState('load');
    assert(response.status() === 404, `HTTP ${response.status()}`);
    await notFoundMessage();
  });

  // d. Not an identifier.
  await check('invalid: ?id=no-slash-here is 400 with #message[data-outcome=invalid]', async () => {
    await goto(`${base}/?id=${encodeURIComponent('no-slash-here')}`, 400);
    await page.locator('#message[data-outcome="invalid"]').waitFor({ state: 'visible' });
  });

  // e. Held by the delegate.
  await check(`referred: ${A.referred} shows #message[data-outcome=referred] naming the delegate`, async () => {
    await goto(`${base}${handlePath(A.referred)}?noredirect`, 300); // a referral, as the handle.net server answers it
    const message = page.locator('#message[data-outcome="referred"]');
    await message.waitFor({ state: 'visible' });
    const t = (await message.textContent()) ?? '';
    assert(t.includes('127.0.0.1'), `#message says "${oneLine(t)}"`);
  });

  // f. Values that look like markup are text.
  await check(`xss: ${A.xss}'s values are text, nothing runs`, async () => {
    await goto(`${base}${handlePath(A.xss)}?noredirect`, 200);
    await page.locator('table#values').waitFor({ state: 'visible' });
    const cells = await page.locator('table#values td.data').allTextContents();
    const script = '<script>window.__pwned=1</script>';
    const cell = page.locator('table#values td.data', { hasText: script });
    assert(cells.some((c) => c.includes(script)), `no td.data reads ${script}: ${cells.join(' | ')}`);
    assert(await cell.first().isVisible(), `the td.data holding ${script} is not visible`);
    assert(cells.some((c) => c.includes('<img src=x onerror=')), `no td.data reads the <img …> value as text: ${cells.join(' | ')}`);
    assert(cells.some((c) => c.includes('javascript:window.__pwned=3')), 'the javascript: URL value is not shown as text');
    const imgs = await page.locator('table#values img').count();
    assert(imgs === 0, `${imgs} img elements inside table#values`);
    const scripts = await page.locator('table#values script, table#values svg, table#values iframe').count();
    assert(scripts === 0, `${scripts} script/svg/iframe elements inside table#values`);
    const jsLinks = await page.locator('a[href^="javascript:" i]').count();
    assert(jsLinks === 0, `${jsLinks} a[href^="javascript:"] on the page`);
    await sleep(300); // an onerror handler would have run by now
    const pwned = await withTimeout(page.evaluate(() => window.__pwned), STEP_MS, 'reading window.__pwned');
    assert(pwned === undefined, `window.__pwned is ${pwned}`);
    assert(dialogs.length === 0, `dialogs: ${dialogs.join('; ')}`);
    return `${cells.length} data cells`;
  });

  // g. Light and dark themes, readable; the search box has a name.
  await check('theme: body colours differ between light and dark, contrast >= 4.5 in each', async () => {
    await goto(base + '/', 200);
    const seen = {};
    for (const scheme of ['light', 'dark']) {
      await page.emulateMedia({ colorScheme: scheme });
      seen[scheme] = await bodyColours(scheme);
    }
    await page.emulateMedia({ colorScheme: 'light' });
    const { light, dark } = seen;
    const same = (a, b) => a.every((x, i) => Math.abs(x - b[i]) < 1);
    assert(!same(light.bg, dark.bg), `the background is ${rgbText(light.bg)} in both (body ${light.bodyCss})`);
    assert(!same(light.fg, dark.fg), `the text colour is ${rgbText(light.fg)} in both (body ${light.textCss})`);
    const notes = [];
    for (const [scheme, c] of Object.entries(seen)) {
      const ratio = contrast(c.fg, c.bg);
      assert(ratio >= 4.5, `${scheme}: contrast ${ratio.toFixed(2)} of ${rgbText(c.fg)} on ${rgbText(c.bg)}`);
      notes.push(`${scheme} ${rgbText(c.fg)} on ${rgbText(c.bg)}${c.bodyOpaque ? '' : ' (body transparent: root/canvas)'} = ${ratio.toFixed(2)}`);
    }
    return notes.join('; ');
  });

  await check('a11y: getByLabel("Identifier") is input#q', async () => {
    const input = page.getByLabel('Identifier', { exact: true });
    const n = await input.count();
    assert(n === 1, `${n} elements labelled "Identifier"`);
    const id = await input.evaluate((el) => `${el.tagName.toLowerCase()}#${el.id}`);
    assert(id === 'input#q', `the label names ${id}`);
  });

  // h. The dashboard, under idbench's load.
  await check('dashboard: /ui/status loads and counts its first update', async () => {
    await goto(base + '/ui/status', 200);
    await page.waitForFunction(() => Number(document.body.dataset.updates || 0) >= 1, null, { timeout: STEP_MS })
      .catch(async () => {
        const n = await page.evaluate(() => document.body.dataset.updates).catch(() => '?');
        throw new Error(`document.body.dataset.updates is ${n}, not >= 1, after ${STEP_MS / 1000} s`);
      });
  });
  // Handle UDP's rate: idbench's traffic alone (the HTTP rate moves with this page's own polling).
  const udpRate = async () => ((await page.locator('#protocols tbody tr[data-protocol="handle_udp"] td.rps').first().textContent({ timeout: 2000 }).catch(() => '')) ?? '').trim();
  const baseline = numberIn(await udpRate());
  console.log('DASHBOARD_OPEN'); // the driver starts idbench now (pipes to a child are synchronous on Linux)

  await check('dashboard: Handle UDP requests/s > 0 and changing while idbench runs', async () => {
    const seen = [];
    let changes = 0;
    let last = baseline;
    let updates = Number(await page.evaluate(() => document.body.dataset.updates || 0));
    const deadline = Date.now() + LOAD_WAIT_MS;
    seen.push(Number.isNaN(baseline) ? 'NaN' : String(baseline));
    while (Date.now() < deadline) {
      const left = deadline - Date.now();
      const next = await page.waitForFunction((n) => Number(document.body.dataset.updates || 0) > n, updates,
                                              { timeout: Math.max(1, Math.min(left, 6000)) })
        .then((h) => h.jsonValue()).catch(() => null);
      if (next === null) {
        if (Date.now() >= deadline) break;
        throw new Error(`no update within 6 s (updates stayed ${updates}); seen ${seen.join(' → ')}`);
      }
      updates = Number(await page.evaluate(() => document.body.dataset.updates || 0));
      const raw = await udpRate();
      const value = numberIn(raw);
      seen.push(raw);
      if (!Number.isNaN(value) && value !== last) changes++;
      if (!Number.isNaN(value)) last = value;
      if (last > 0 && changes >= 2) {
        const total = numberIn(await text('#rps-total'));
        assert(total >= last, `#rps-total ${total} is below Handle UDP's ${last}`);
        return `${updates} updates: ${seen.join(' → ')} (all protocols ${total}/s)`;
      }
    }
    throw new Error(`within ${LOAD_WAIT_MS / 1000} s: ${seen.join(' → ')} (${changes} changes)`);
  }, LOAD_WAIT_MS + STEP_MS);

  await check('dashboard: protocol rows, cache hit ratio, disk, prefixes, rps chart', async () => {
    const udp = page.locator('#protocols tbody tr[data-protocol="handle_udp"]');
    assert(await udp.count() === 1, 'no #protocols tbody tr[data-protocol="handle_udp"]');
    const udpRps = numberIn((await udp.locator('td.rps').first().textContent()) ?? '');
    assert(udpRps > 0, `handle_udp's td.rps reads ${udpRps} under load`);
    await page.waitForFunction(() => (document.querySelector('#cache-hit-ratio')?.textContent ?? '').trim().endsWith('%'), null, { timeout: 6000 })
      .catch(async () => { throw new Error(`#cache-hit-ratio reads "${await text('#cache-hit-ratio')}"`); });
    const notes = [`handle_udp ${udpRps}/s`, `hit ratio ${(await text('#cache-hit-ratio')).trim()}`];
    for (const id of ['#disk-total', '#prefix-homed']) {
      const t = (await text(id)).trim();
      assert(t !== '' && t !== '–', `${id} reads "${t}"`);
      notes.push(`${id} ${t}`);
    }
    const marks = await page.locator('svg#chart-rps polyline, svg#chart-rps path').count();
    assert(marks >= 1, 'svg#chart-rps has no polyline or path');
    notes.push(`chart-rps ${marks} lines`);
    return notes.join(', ');
  });

  await check('dashboard: screenshots, light and dark', async () => {
    await page.emulateMedia({ colorScheme: 'light' });
    const light = path.join(A.artifacts, 'status.png');
    await page.screenshot({ path: light, fullPage: true, timeout: STEP_MS });
    await page.emulateMedia({ colorScheme: 'dark' });
    const n = Number(await page.evaluate(() => document.body.dataset.updates || 0));
    await page.waitForFunction((k) => Number(document.body.dataset.updates || 0) > k, n, { timeout: 6000 });
    const dark = path.join(A.artifacts, 'status-dark.png');
    await page.screenshot({ path: dark, fullPage: true, timeout: STEP_MS });
    return `${light}, ${dark}`;
  });

  await withTimeout(context.close(), STEP_MS, 'closing the context').catch(() => {});
}

let status = 1;
try {
  await main();
  console.log(`# ${passes} passed, ${failures} failed`);
  status = failures === 0 && passes > 0 ? 0 : 1;
} catch (e) {
  console.log(`not ok - the run: ${oneLine(e && e.stack ? e.stack : e)}`);
} finally {
  if (browser) await withTimeout(browser.close(), STEP_MS, 'closing Chromium').catch(() => {});
  clearTimeout(overall);
}
process.exit(status);
