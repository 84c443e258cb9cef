// Opens the demo page with ?selftest=1 in the system's Chromium (headless, through puppeteer-core, which
// never downloads a browser) and prints one JSON line: the page's self-test result, the browser's version
// and what the page logged. Optionally screenshots the page as a user sees it, at a phone's viewport.
// With --camera it also taps Camera on the interactive page, with Chromium's synthetic camera standing in
// for a phone's, and reports how many frames were classified.
//   node selftest.mjs URL [--screenshot FILE] [--camera] [--timeout MS] [--browser PATH]
import puppeteer from 'puppeteer-core';

const args = process.argv.slice(2);
const option = (name, fallback) => {
  const at = args.indexOf(name);
  return at >= 0 ? args[at + 1] : fallback;
};
const url = args[0];
const screenshot = option('--screenshot', null);
const timeout = Number(option('--timeout', 300000));
const executablePath = option('--browser', process.env.CHROMIUM ?? '/usr/bin/chromium');

// --no-sandbox: Chromium refuses to run as root with its sandbox, and CI runs as root.
// --disable-dev-shm-usage: containers often give /dev/shm 64 MB, too little for the renderer.
// The fake media flags give getUserMedia a synthetic camera and grant it without a prompt.
const browser = await puppeteer.launch({
  executablePath, headless: true,
  args: ['--no-sandbox', '--disable-dev-shm-usage', '--use-fake-device-for-media-stream',
         '--use-fake-ui-for-media-stream'],
});
let exitCode = 0;
try {
  const page = await browser.newPage();
  const log = [];
  page.on('console', (message) => {
    if (['error', 'warning'].includes(message.type())) log.push(`${message.type()}: ${message.text()}`.slice(0, 400));
  });
  page.on('pageerror', (error) => log.push(`pageerror: ${error.message}`.slice(0, 400)));
  page.on('requestfailed', (request) => log.push(`requestfailed: ${request.url()} ${request.failure()?.errorText}`));
  // a phone: iPhone-sized viewport, touch, 3x pixels
  await page.setViewport({ width: 390, height: 844, deviceScaleFactor: 3, isMobile: true, hasTouch: true });
  await page.goto(url, { waitUntil: 'load' });
  await page.waitForSelector('#selftest[data-done="1"]', { timeout });
  const text = await page.$eval('#selftest', (element) => element.textContent);
  if (screenshot) { // the page as a user sees it: the first model file loaded, its self-test shown
    const plain = new URL(url);
    plain.searchParams.delete('selftest');
    await page.goto(plain.href, { waitUntil: 'load' });
    await page.waitForSelector('#selftest-badge.pass, #selftest-badge.fail', { timeout });
    await page.screenshot({ path: screenshot });
  }
  let camera = null;
  if (args.includes('--camera')) {
    const plain = new URL(url);
    plain.searchParams.delete('selftest');
    await page.goto(plain.href, { waitUntil: 'load' });
    await page.waitForSelector('#selftest-badge.pass, #selftest-badge.fail', { timeout });
    const before = await page.$eval('#stats', (element) => element.textContent);
    await page.click('#camera-button');
    // the latency window counts classified frames: wait for it to fill up (it holds the last 50)
    await page.waitForFunction(() => /last 50 runs/.test(document.getElementById('stats').textContent), { timeout });
    camera = await page.evaluate(() => ({
      videoShown: !document.getElementById('camera').hidden,
      frameSize: [document.getElementById('camera').videoWidth, document.getElementById('camera').videoHeight],
      top5: [...document.querySelectorAll('#top5 li')].map((item) => item.textContent),
      stats: document.getElementById('stats').textContent,
      button: document.getElementById('camera-button').textContent,
    }));
    camera.statsBefore = before;
    await page.click('#camera-button');
    camera.videoShownAfterStop = await page.$eval('#camera', (element) => !element.hidden);
  }
  process.stdout.write(JSON.stringify({ browser: await browser.version(), result: JSON.parse(text), camera, log }) + '\n');
} catch (error) {
  process.stderr.write(`selftest: ${error.message}\n`);
  exitCode = 1;
} finally {
  await browser.close();
}
process.exit(exitCode);
