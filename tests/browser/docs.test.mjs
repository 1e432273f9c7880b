// Headless-Chromium test of portcullis' Swagger UI, driven the way a person
// would: open /docs, log in through the OAuth2 password flow of the
// "Authorize" dialog (which posts to /token), then "Try it out" on
// GET /users/me and read the live response that Swagger UI shows.
//
// Run with node's built-in runner (`node --test docs.test.mjs`); run.sh starts
// a throw-away server and sets the environment:
//   PORTCULLIS_URL         base URL, e.g. http://127.0.0.1:8123 (required)
//   PORTCULLIS_USER        user to log in as (required)
//   PORTCULLIS_PASSWORD    that user's password (required)
//   PORTCULLIS_SCREENSHOT  where to save a full-page PNG at the end (optional)
//   PORTCULLIS_CHROMIUM    browser binary (default /usr/bin/chromium)
//
// Uses playwright-core only (it never downloads a browser) with Debian's
// chromium. Every request the browser makes must go to 127.0.0.1/localhost:
// anything else is aborted and fails the test.
//
// /docs is served with a strict Content-Security-Policy: the page must work
// under it without a single violation, and after logging in neither
// localStorage nor sessionStorage (nor a cookie) may hold the password or a
// token (Swagger UI's persistAuthorization would put them in localStorage).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const STEP_TIMEOUT = 30_000;
const TEST_TIMEOUT = 180_000;

const BASE_URL = (process.env.PORTCULLIS_URL ?? '').replace(/\/+$/, '');
const USER = process.env.PORTCULLIS_USER ?? '';
const PASSWORD = process.env.PORTCULLIS_PASSWORD ?? '';
const SCREENSHOT = process.env.PORTCULLIS_SCREENSHOT ?? '';
const CHROMIUM = process.env.PORTCULLIS_CHROMIUM || '/usr/bin/chromium';

const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

const LOCAL_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]']);
// Schemes that never touch the network.
const LOCAL_SCHEMES = new Set(['data:', 'blob:', 'about:']);

function isLocal(url) {
  let u;
  try {
    u = new URL(url);
  } catch {
    return false;
  }
  return LOCAL_SCHEMES.has(u.protocol) || LOCAL_HOSTS.has(u.hostname);
}

test('Swagger UI: OAuth2 password login, then Try it out on GET /users/me', { timeout: TEST_TIMEOUT }, async (t) => {
  assert.ok(BASE_URL, 'PORTCULLIS_URL must be set (e.g. http://127.0.0.1:8123)');
  assert.ok(USER, 'PORTCULLIS_USER must be set');
  assert.ok(PASSWORD, 'PORTCULLIS_PASSWORD must be set');
  assert.ok(isLocal(BASE_URL), `PORTCULLIS_URL must point at 127.0.0.1 or localhost, got ${BASE_URL}`);

  const requests = [];
  const foreign = [];
  const consoleErrors = [];
  const pageErrors = [];
  const cspViolations = [];

  const userDataDir = await mkdtemp(path.join(tmpdir(), 'portcullis-chromium-'));
  let context;
  let page;
  try {
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      timeout: STEP_TIMEOUT,
      viewport: { width: 1280, height: 1024 },
      serviceWorkers: 'block',
    });
    context.setDefaultTimeout(STEP_TIMEOUT);
    context.setDefaultNavigationTimeout(STEP_TIMEOUT);

    // Record every request; abort (and later fail on) anything off this machine.
    context.on('request', (req) => {
      requests.push(`${req.method()} ${req.url()}`);
      if (!isLocal(req.url())) foreign.push(`${req.method()} ${req.url()}`);
    });
    await context.route('**/*', (route) =>
      isLocal(route.request().url()) ? route.continue() : route.abort('blockedbyclient'),
    );

    // Every CSP violation the page sees, reported from inside it (Chromium
    // also logs each one as a console error, checked at the end too).
    await context.exposeFunction('__portcullisCspViolation', (v) => cspViolations.push(v));
    await context.addInitScript(() => {
      document.addEventListener('securitypolicyviolation', (e) => {
        window.__portcullisCspViolation(
          `${e.effectiveDirective} blocked ${e.blockedURI || '(inline)'} at ${e.sourceFile}:${e.lineNumber}: ${e.sample}`,
        );
      });
    });

    page = context.pages()[0] ?? (await context.newPage());
    page.on('console', (msg) => {
      if (msg.type() === 'error') consoleErrors.push(msg.text());
    });
    page.on('pageerror', (err) => pageErrors.push(String(err)));

    // 1. Open /docs (utoipa-swagger-ui redirects /docs -> /docs/).
    const nav = await page.goto(`${BASE_URL}/docs`, { waitUntil: 'domcontentloaded' });
    assert.ok(nav, 'no response for /docs');
    assert.equal(nav.status(), 200, `GET /docs (final URL ${page.url()}) answered ${nav.status()}`);
    const csp = (await nav.headerValue('content-security-policy')) ?? '';
    const directives = new Map(
      csp
        .split(';')
        .map((d) => d.trim().split(/\s+/))
        .filter((d) => d[0])
        .map(([name, ...sources]) => [name, sources]),
    );
    assert.deepEqual(directives.get('default-src'), ["'self'"], `CSP of /docs/: ${csp}`);
    assert.deepEqual(directives.get('script-src'), ["'self'"], `CSP of /docs/: ${csp}`);
    assert.deepEqual(directives.get('frame-ancestors'), ["'none'"], `CSP of /docs/: ${csp}`);
    assert.deepEqual(directives.get('object-src'), ["'none'"], `CSP of /docs/: ${csp}`);
    assert.ok(
      (directives.get('style-src') ?? []).every((s) => s === "'self'" || s.startsWith("'sha256-")),
      `CSP of /docs/: style-src allows more than 'self' and hashes: ${csp}`,
    );
    assert.ok(!/unsafe-(inline|eval)/.test(csp), `CSP of /docs/ allows unsafe-inline/unsafe-eval: ${csp}`);
    assert.equal(await nav.headerValue('x-content-type-options'), 'nosniff');

    // 2. Wait for Swagger UI to load the OpenAPI document and render operations.
    await page.locator('#swagger-ui .swagger-ui').first().waitFor({ state: 'attached' });
    const firstOp = page.locator('.swagger-ui .opblock').first();
    const loadError = page.locator('.swagger-ui .errors-wrapper').first();
    await firstOp.or(loadError).first().waitFor({ state: 'visible' });
    if (!(await firstOp.isVisible())) {
      const text = await loadError.innerText().catch(() => '');
      assert.fail(`Swagger UI did not render any operation; it shows: ${text}`);
    }

    // 3. Open the Authorize dialog.
    const authorizeBtn = page.locator('.swagger-ui .auth-wrapper button.authorize');
    await authorizeBtn.waitFor({ state: 'visible' });
    await authorizeBtn.click();
    const modal = page.locator('.swagger-ui .dialog-ux .modal-ux');
    await modal.waitFor({ state: 'visible' });

    // 4. Fill the OAuth2 password-flow form (client id/secret left empty).
    // (Matched by its heading: the inputs themselves are replaced by text once authorized.)
    const oauth = modal
      .locator('.auth-container')
      .filter({ has: page.locator('h4', { hasText: /\(OAuth2, password\)/ }) });
    await oauth.first().waitFor({ state: 'visible' });
    assert.equal(await oauth.count(), 1, 'expected exactly one OAuth2 password-flow scheme in the Authorize dialog');
    await oauth.locator('#oauth_username').fill(USER);
    await oauth.locator('#oauth_password').fill(PASSWORD);

    // 5. Press the dialog's Authorize and watch the token request go out.
    const tokenResponseP = page.waitForResponse(
      (r) => r.request().method() === 'POST' && /\/token$/.test(new URL(r.url()).pathname),
      { timeout: STEP_TIMEOUT },
    );
    tokenResponseP.catch(() => {}); // awaited below; avoid an unhandled rejection if the click throws
    await oauth.locator('.auth-btn-wrapper button.authorize', { hasText: 'Authorize' }).click();
    const tokenResponse = await tokenResponseP;
    const tokenUrl = new URL(tokenResponse.url());
    const tokenBody = await tokenResponse.text().catch(() => '<unreadable>');
    assert.equal(
      tokenUrl.pathname,
      '/token',
      `Swagger UI posted the password grant to ${tokenUrl.pathname}, not /token ` +
        `(status ${tokenResponse.status()}); the relative tokenUrl resolves against the page or server URL`,
    );
    assert.equal(tokenResponse.status(), 200, `POST /token answered ${tokenResponse.status()}: ${tokenBody}`);
    const tokenForm = new URLSearchParams(tokenResponse.request().postData() ?? '');
    assert.equal(tokenForm.get('grant_type'), 'password');
    assert.equal(tokenForm.get('username'), USER);
    assert.equal(await tokenResponse.headerValue('cache-control'), 'no-store');
    const issued = JSON.parse(tokenBody);
    assert.ok(issued.access_token && issued.refresh_token, `token response lacks a token: ${tokenBody}`);

    // 6. The dialog must show the logged-in state.
    const logout = oauth.locator('.auth-btn-wrapper button', { hasText: 'Logout' });
    const authError = oauth.locator('.errors').first();
    await logout.or(authError).first().waitFor({ state: 'visible' });
    if (!(await logout.isVisible())) {
      const text = await authError.innerText().catch(() => '');
      assert.fail(`Authorize dialog shows an error instead of Logout: ${text} (token response: ${tokenBody})`);
    }
    await oauth.locator('h6', { hasText: 'Authorized' }).waitFor({ state: 'visible' });

    // 7. Close the dialog.
    await modal.locator('button.btn-done').first().click();
    await modal.waitFor({ state: 'hidden' });
    await assert.doesNotReject(
      page.locator('.swagger-ui .auth-wrapper button.authorize.locked').waitFor({ state: 'visible' }),
      'top Authorize button should show the locked (authorized) state',
    );

    // 8. Expand GET /users/me (not PATCH /users/me, not POST /users/me/password).
    const op = page
      .locator('.swagger-ui .opblock.opblock-get')
      .filter({ has: page.locator('.opblock-summary-path[data-path="/users/me"]') });
    assert.equal(await op.count(), 1, 'expected exactly one GET /users/me operation in Swagger UI');
    await op.locator('.opblock-summary-control').click();
    await op.locator('.opblock-body').waitFor({ state: 'visible' });

    // 9. Try it out -> Execute, and wait for the live request to come back.
    await op.locator('button.try-out__btn', { hasText: 'Try it out' }).click();
    const execute = op.locator('button.execute');
    await execute.waitFor({ state: 'visible' });
    const meResponseP = page.waitForResponse(
      (r) => r.request().method() === 'GET' && new URL(r.url()).pathname === '/users/me',
      { timeout: STEP_TIMEOUT },
    );
    meResponseP.catch(() => {});
    await execute.click();
    const meResponse = await meResponseP;
    const sentAuth = (await meResponse.request().headerValue('authorization')) ?? '';
    assert.match(sentAuth, /^Bearer \S+$/, 'GET /users/me was not sent with a Bearer token');
    assert.equal(meResponse.status(), 200, `GET /users/me answered ${meResponse.status()}: ${await meResponse.text().catch(() => '')}`);

    // 10. What Swagger UI shows: status 200 and a body naming the user.
    const live = op.locator('.live-responses-table');
    await live.waitFor({ state: 'visible' });
    const statusText = (await live.locator('tbody tr.response td.response-col_status').first().innerText()).trim();
    assert.equal(statusText.match(/^\d+/)?.[0], '200', `Swagger UI shows response status "${statusText}"`);
    const bodyBlock = live.locator('tbody tr.response td.response-col_description .highlight-code pre').first();
    await bodyBlock.waitFor({ state: 'visible' });
    const bodyText = (await bodyBlock.innerText()).trim();
    assert.ok(bodyText.includes(USER), `response body shown does not contain the username: ${bodyText}`);
    let shown;
    try {
      shown = JSON.parse(bodyText);
    } catch {
      assert.fail(`response body shown is not JSON: ${bodyText}`);
    }
    assert.equal(shown.username, USER, `response body shown: ${bodyText}`);
    assert.equal(shown.disabled, false, `response body shown: ${bodyText}`);
    assert.ok(Array.isArray(shown.scopes), `response body shown has no scopes array: ${bodyText}`);
    assert.equal(await meResponse.headerValue('cache-control'), 'no-store');

    // 11. No credential in the browser's storage: every key and value of
    // localStorage and sessionStorage, and every cookie, is searched for the
    // password and both tokens (whole, or just a JWT's signature).
    const storage = await page.evaluate(() => {
      const dump = (store) =>
        Object.fromEntries(
          Array.from({ length: store.length }, (_, i) => store.key(i)).map((k) => [k, store.getItem(k)]),
        );
      return { localStorage: dump(window.localStorage), sessionStorage: dump(window.sessionStorage) };
    });
    storage.cookies = await context.cookies();
    const stored = JSON.stringify(storage);
    const secrets = {
      password: PASSWORD,
      'access token': issued.access_token,
      'access token signature': issued.access_token.split('.').pop(),
      'refresh token': issued.refresh_token,
    };
    for (const [what, secret] of Object.entries(secrets)) {
      assert.ok(!stored.includes(secret), `the browser's storage holds the ${what}: ${stored}`);
    }
    t.diagnostic(`browser storage after login: ${stored}`);

    // 12. A reload forgets the login: the top Authorize button is unlocked.
    await page.reload({ waitUntil: 'domcontentloaded' });
    await page.locator('.swagger-ui .opblock').first().waitFor({ state: 'visible' });
    const top = page.locator('.swagger-ui .auth-wrapper button.authorize');
    await top.waitFor({ state: 'visible' });
    assert.ok(!(await top.evaluate((b) => b.classList.contains('locked'))), 'the login survived a reload');

    // 13. Nothing may have left the machine, and the page ran under its CSP
    // without a single violation.
    assert.deepEqual(foreign, [], `the page made requests off this machine:\n${foreign.join('\n')}`);
    assert.deepEqual(pageErrors, [], `uncaught errors in the page:\n${pageErrors.join('\n')}`);
    assert.deepEqual(cspViolations, [], `Content-Security-Policy violations:\n${cspViolations.join('\n')}`);
    const cspConsole = consoleErrors.filter((m) => /Content Security Policy/i.test(m));
    assert.deepEqual(cspConsole, [], `Content-Security-Policy errors in the console:\n${cspConsole.join('\n')}`);
  } catch (err) {
    t.diagnostic(`requests made (${requests.length}):`);
    for (const r of requests) t.diagnostic(`  ${r}`);
    for (const m of consoleErrors) t.diagnostic(`console error: ${m}`);
    for (const m of pageErrors) t.diagnostic(`page error: ${m}`);
    for (const m of cspViolations) t.diagnostic(`CSP violation: ${m}`);
    if (page) t.diagnostic(`page URL at failure: ${page.url()}`);
    throw err;
  } finally {
    if (page && SCREENSHOT) {
      await page
        .screenshot({ path: SCREENSHOT, fullPage: true, timeout: 10_000 })
        .then(() => t.diagnostic(`screenshot: ${SCREENSHOT}`))
        .catch((e) => t.diagnostic(`screenshot failed: ${e}`));
    }
    if (context) await context.close().catch(() => {});
    await rm(userDataDir, { recursive: true, force: true }).catch(() => {});
  }
});
