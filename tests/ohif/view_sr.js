#!/usr/bin/env node
// Open an SR in OHIF (headless Debian chromium via puppeteer-core) and report what the viewer shows.
//
//   node view_sr.js URL SCREENSHOT.png [EXPECTED_TEXT ...]
//
// URL is the viewer route, e.g. http://127.0.0.1:PORT/basic?StudyInstanceUIDs=S&initialSeriesInstanceUID=SR
// Waits (recipe in docs/viewer.md): network idle, then until some `svg text` contains each
// EXPECTED_TEXT, then until canvas sizes and label positions are stable for 1.5 s, then a window
// `resize` and 1.5 s more, then the screenshot. Prints one JSON object on stdout:
//   {svgTexts: [...], labels: [[line, ...] per text box], bodyText, seriesDescriptions, canvases, errors}
// Exit 0 on success, 2 when the expected texts never appeared (the screenshot is still written).
'use strict';

const puppeteer = require('puppeteer-core');

const [url, screenshotPath, ...expected] = process.argv.slice(2);
const TOTAL_MS = Number(process.env.OHIF_TIMEOUT_MS || 90000);
const WIDTH = Number(process.env.OHIF_WIDTH || 1280);
const HEIGHT = Number(process.env.OHIF_HEIGHT || 900);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function snapshot(page) {
  return page.evaluate(() => {
    const texts = [...document.querySelectorAll('svg text')];
    const boxes = new Map();
    for (const t of texts) {
      const group = t.closest('g[data-annotation-uid]') || t.parentElement;
      if (!boxes.has(group)) boxes.set(group, []);
      const lines = [...t.querySelectorAll('tspan')].map((s) => s.textContent);
      boxes.get(group).push(...(lines.length ? lines : [t.textContent]));
    }
    const rect = (el) => {
      const r = el.getBoundingClientRect();
      return [Math.round(r.x), Math.round(r.y), Math.round(r.width), Math.round(r.height)];
    };
    return {
      svgTexts: texts.map((t) => t.textContent),
      labels: [...boxes.values()],
      positions: texts.map(rect),
      canvases: [...document.querySelectorAll('canvas')].map(rect),
    };
  });
}

async function main() {
  if (!url || !screenshotPath) {
    console.error('usage: node view_sr.js URL SCREENSHOT.png [EXPECTED_TEXT ...]');
    process.exit(64);
  }
  const started = Date.now();
  const left = () => Math.max(1000, TOTAL_MS - (Date.now() - started));
  const errors = [];
  const browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--enable-unsafe-swiftshader', '--disable-dev-shm-usage', `--window-size=${WIDTH},${HEIGHT}`,
    ],
    defaultViewport: { width: WIDTH, height: HEIGHT },
    protocolTimeout: TOTAL_MS,
  });
  const watchdog = setTimeout(() => {
    console.error('view_sr.js: overall timeout');
    browser.process()?.kill('SIGKILL');
    process.exit(3);
  }, TOTAL_MS + 15000);
  let status = 0;
  try {
    const page = await browser.newPage();
    page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
    page.on('console', (m) => {
      if (m.type() === 'error' || process.env.OHIF_DEBUG) {
        errors.push(`console.${m.type()}: ${m.text()}`.slice(0, 300));
      }
    });
    page.on('requestfailed', (r) => errors.push(`requestfailed: ${r.url()} ${r.failure()?.errorText}`));
    // The first-visit tour pop-up would cover the image.
    await page.evaluateOnNewDocument(() => {
      localStorage.setItem('shownTours', JSON.stringify(['basicViewerTour']));
    });
    await page.goto(url, { waitUntil: 'networkidle0', timeout: left() });

    // 1. the expected labels appear in svg text
    try {
      await page.waitForFunction(
        (wanted) => {
          const all = [...document.querySelectorAll('svg text')].map((t) => t.textContent).join('\n');
          return wanted.every((w) => all.includes(w)) && document.querySelectorAll('svg text').length > 0;
        },
        { timeout: left(), polling: 250 },
        expected,
      );
    } catch (e) {
      status = 2;
      errors.push(`expected texts not shown: ${JSON.stringify(expected)}`);
    }

    // 2. canvases and label positions stable for 1.5 s
    const stable = async () => {
      let last = JSON.stringify(await snapshot(page));
      let since = Date.now();
      while (Date.now() - since < 1500 && left() > 1500) {
        await sleep(250);
        const now = JSON.stringify(await snapshot(page));
        if (now !== last) {
          last = now;
          since = Date.now();
        }
      }
    };
    await stable();
    // 3. a resize makes cornerstone re-measure the viewports, then settle again
    await page.evaluate(() => window.dispatchEvent(new Event('resize')));
    await sleep(1500);
    await stable();

    const shot = await snapshot(page);
    const bodyText = await page.evaluate(() => document.body.innerText);
    await page.screenshot({ path: screenshotPath, type: 'png' });
    process.stdout.write(
      JSON.stringify({ ...shot, bodyText, errors, elapsedMs: Date.now() - started }) + '\n',
    );
  } finally {
    clearTimeout(watchdog);
    await browser.close();
  }
  process.exit(status);
}

main().catch((e) => {
  console.error(`view_sr.js: ${e.stack || e}`);
  process.exit(1);
});
