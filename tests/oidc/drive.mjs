// The person: opens a delivered step-up link in headless Chromium (Debian's, driven by
// playwright-core) and answers it.
//
// Usage: node drive.mjs LINK ACTION [--user U] [--password P] [--otp CODE] [--replay]
//   ACTION: continue (sign in at the IdP), deny, fraud, open (only look at the page)
//   --replay: after the flow, load the callback URL pfgate received once more (a replayed answer)
// Prints one JSON line: {status, outcome, application, user, ip, replay_status, replay_outcome,
// start_status, csp, cache_control, referrer_policy}. `outcome` is the data-outcome attribute of
// the final page's #outcome heading (approved, denied, fraud, expired, refused).

import { chromium } from 'playwright-core';

const [link, action, ...rest] = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = rest.indexOf(name);
  return i >= 0 ? rest[i + 1] : dflt;
};
const user = opt('--user', 'alice@contoso.com');
const password = opt('--password', 'correct horse');
const otp = opt('--otp', '');
const replay = rest.includes('--replay');

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const out = {};
try {
  const page = await browser.newPage();
  page.setDefaultTimeout(20000);
  let callbackUrl;
  page.on('request', (r) => {
    if (r.url().includes('/stepup/callback')) callbackUrl = r.url();
  });
  const first = await page.goto(link);
  out.start_status = first.status();
  const h = first.headers();
  out.csp = h['content-security-policy'];
  out.cache_control = h['cache-control'];
  out.referrer_policy = h['referrer-policy'];
  const text = async (sel) => ((await page.locator(sel).count()) ? page.locator(sel).innerText() : null);
  out.application = await text('#application');
  out.user = await text('#user');
  out.ip = await text('#ip');
  if (action !== 'open' && (await page.locator('#continue').count())) {
    if (action === 'continue') {
      await page.click('#continue');
      await page.waitForSelector('#login');
      await page.fill('#login', user);
      await page.fill('#password', password);
      await page.fill('#otp', otp);
      const [resp] = await Promise.all([
        page.waitForResponse((r) => r.url().includes('/stepup/callback')),
        page.click('#submit'),
      ]);
      out.status = resp.status();
    } else {
      const [resp] = await Promise.all([
        page.waitForResponse((r) => r.request().method() === 'POST'),
        page.click(action === 'deny' ? '#deny' : '#fraud'),
      ]);
      out.status = resp.status();
    }
    await page.waitForSelector('#outcome');
  } else {
    out.status = out.start_status;
  }
  out.outcome = await page.locator('#outcome').getAttribute('data-outcome');
  out.reason = await text('#reason');
  if (replay && callbackUrl) {
    const again = await page.goto(callbackUrl);
    out.replay_status = again.status();
    out.replay_outcome = await page.locator('#outcome').getAttribute('data-outcome');
  }
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
