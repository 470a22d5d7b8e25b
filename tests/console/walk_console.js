#!/usr/bin/env node
// Walk the operator console in headless Debian chromium (puppeteer-core, as tests/ohif/ does) and
// report what an operator sees.
//
//   node walk_console.js BASE_URL PASSWORD STUDY_UID SCREENSHOT_DIR
//
// Steps: a wrong password is refused; the right one signs in; the study is in the list; its page
// shows the overlay image (loaded, non-empty) and the verdict; the outbox has dead letters, "Retry
// all" is pressed and the page is reloaded until they are delivered; the charts page has SVG
// charts with bars or dots; the system page loads. Prints one JSON object on stdout; exit 0 when
// every step ran (the Python test judges the values), 2 on a step that failed.
'use strict';

const path = require('path');
const puppeteer = require('puppeteer-core');

const [base, password, studyUid, shots] = process.argv.slice(2);
const TOTAL_MS = Number(process.env.CONSOLE_TIMEOUT_MS || 45000);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function main() {
  const out = { steps: [], errors: [] };
  const browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--disable-dev-shm-usage', '--window-size=1280,900',
    ],
    defaultViewport: { width: 1280, height: 900 },
    protocolTimeout: TOTAL_MS,
  });
  const watchdog = setTimeout(() => {
    console.log(JSON.stringify({ ...out, errors: [...out.errors, 'overall timeout'] }));
    browser.process()?.kill('SIGKILL');
    process.exit(3);
  }, TOTAL_MS);
  let status = 0;
  try {
    const page = await browser.newPage();
    page.setDefaultTimeout(15000);
    page.on('pageerror', (e) => out.errors.push(`pageerror: ${e.message}`));
    page.on('console', (m) => m.type() === 'error' && out.errors.push(`console: ${m.text()}`));
    const shot = (name, fullPage = true) => page.screenshot({ path: path.join(shots, name), fullPage });
    const text = (sel) => page.$eval(sel, (el) => el.textContent.trim());

    // sign in: wrong password first, then the right one
    await page.goto(`${base}/console/studies`, { waitUntil: 'load' });
    out.signInUrl = new URL(page.url()).pathname;
    await page.type('#password', 'wrong-password');
    await Promise.all([page.waitForNavigation(), page.click('form.sign-in button')]);
    out.wrongPassword = await text('#sign-in-error').catch(() => '');
    await shot('console-sign-in.png');
    await page.type('#password', password);
    await Promise.all([page.waitForNavigation(), page.click('form.sign-in button')]);
    out.afterSignIn = new URL(page.url()).pathname;
    out.steps.push('signed in');

    // the study list
    const link = `a.study-link[title="${studyUid}"]`;
    await page.waitForSelector(link);
    out.listRow = await page.$eval(link, (a) => a.closest('tr').innerText);
    // live refresh (plain JS): the list is fetched again and the status line says so
    await page.waitForFunction(
      () => (document.getElementById('live-status')?.textContent || '').startsWith('Up to date'),
      { timeout: 10000 });
    out.liveStatus = await text('#live-status');
    await shot('console-studies.png');
    out.steps.push('study listed');

    // the study page: overlay image and verdict
    await Promise.all([page.waitForNavigation(), page.click(link)]);
    await page.waitForFunction(() => {
      const img = document.getElementById('overlay');
      return img && img.complete && img.naturalWidth > 0;
    });
    out.overlay = await page.$eval('#overlay', (img) => [img.naturalWidth, img.naturalHeight]);
    out.verdict = await text('#verdict');
    out.score = await text('#score');
    out.srTree = await page.$$eval('.sr-tree li', (items) => items.length);
    out.deadOnStudyPage = await page.$$eval('.deliveries tr.o-dead', (rows) => rows.length);
    await shot('console-study.png', false);
    out.steps.push('study page');

    // the outbox: retry the dead letters, then wait until they are delivered
    await page.goto(`${base}/console/outbox`, { waitUntil: 'load' });
    out.deadBefore = await page.$$eval('tr.o-dead', (rows) => rows.length);
    await shot('console-outbox-dead.png');
    await Promise.all([page.waitForNavigation(), page.click('#retry-all')]);
    out.retryNote = await text('p.note').catch(() => '');
    const deadline = Date.now() + 20000;
    for (;;) {
      out.deadAfter = await page.$$eval('tr.o-dead', (rows) => rows.length);
      out.deliveredAfter = await page.$$eval('tr.o-delivered', (rows) => rows.length);
      if ((out.deadAfter === 0 && out.deliveredAfter >= out.deadBefore) || Date.now() > deadline) break;
      await sleep(500);
      await page.goto(`${base}/console/outbox`, { waitUntil: 'load' });
    }
    await shot('console-outbox.png');
    out.steps.push('outbox retried');

    // the charts, drawn on the server as SVG
    await page.goto(`${base}/console/charts`, { waitUntil: 'load' });
    out.charts = await page.$$eval('svg.chart', (svgs) =>
      svgs.map((s) => ({
        title: s.querySelector('title')?.textContent || '',
        marks: s.querySelectorAll('rect.bar, circle.dot').length,
        width: Math.round(s.getBoundingClientRect().width),
      })));
    await shot('console-charts.png');
    out.steps.push('charts');

    await page.goto(`${base}/console/system`, { waitUntil: 'load' });
    out.systemHeadings = await page.$$eval('h2', (hs) => hs.map((h) => h.textContent.trim()));
    await shot('console-system.png');
    out.steps.push('system');
  } catch (e) {
    out.errors.push(`step failed: ${e.message}`);
    status = 2;
  } finally {
    clearTimeout(watchdog);
    await browser.close();
  }
  console.log(JSON.stringify(out));
  process.exit(status);
}

main();
