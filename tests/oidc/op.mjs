// A real, certified OpenID Connect provider (panva's `oidc-provider`) for pfgate's step-up tests.
//
// Usage: node op.mjs --client-id ID --client-secret SECRET --redirect-uri URI [--rogue-jwks]
// Prints "listening on http://127.0.0.1:PORT" (the issuer) once it accepts connections.
//
// Its users sign in with any known username and the password "correct horse". Each account also
// has an `oid` claim, a fixed GUID in lower case as Entra's object id (OIDS below), for pfgate's
// `match = "external_id"` tests. Whether the
// sign-in counts as multi-factor is the person's choice on the login form: a one-time code of
// "123456" makes `amr` ["pwd", "otp", "mfa"]; an empty code leaves `amr` ["pwd"] — the IdP's view
// of a sign-in that skipped MFA. Consent is granted by the OP's own policy (a first-party client),
// as Entra does for an app the tenant registered.
//
// --rogue-jwks: the JWKS endpoint publishes a different key (another kid) than the one the OP signs
// ID tokens with, so every ID token is "signed with an unknown key" for the relying party.
//
// --auth-time-offset SECONDS: the sign-in is recorded as made SECONDS from now (negative: earlier),
// so the ID token's auth_time says so while the OP's clock (iat) is right — a sign-in made before
// the step-up link was issued, on an IdP whose clock agrees with pfgate's.

import crypto from 'node:crypto';
import http from 'node:http';
import Provider from 'oidc-provider';

const args = process.argv.slice(2);
const arg = (name) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const clientId = arg('--client-id');
const clientSecret = arg('--client-secret');
const redirectUri = arg('--redirect-uri');
const rogue = args.includes('--rogue-jwks');
const authTimeOffset = Number(arg('--auth-time-offset') || 0);
if (!clientId || !clientSecret || !redirectUri) {
  console.error('usage: node op.mjs --client-id ID --client-secret SECRET --redirect-uri URI [--rogue-jwks]');
  process.exit(2);
}

const USERS = new Set(['alice@contoso.com', 'bob@contoso.com', 'carol@contoso.com']);
// Entra-style object ids (tests/integration/oidc.rs knows them).
const OIDS = {
  'alice@contoso.com': '3f2504e0-4f89-41d3-9a0c-0305e82c3301',
  'bob@contoso.com': '7c9e6679-7425-40de-944b-e07fc1f90ae7',
  'carol@contoso.com': 'a8098c1a-f86e-11da-bd1a-00112444be1e',
};
const PASSWORD = 'correct horse';
const OTP = '123456';

const rsaJwk = (kid) => {
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid, alg: 'RS256', use: 'sig' };
};
const signing = rsaJwk('op-signing-key');
const other = rsaJwk('some-other-key');
const publicOf = ({ kty, n, e, kid, alg, use }) => ({ kty, n, e, kid, alg, use });

const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

const server = http.createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    redirect_uris: [redirectUri],
    response_types: ['code'],
    grant_types: ['authorization_code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  jwks: { keys: [signing] },
  pkce: { methods: ['S256'], required: () => true },
  features: { devInteractions: { enabled: false } },
  claims: {
    acr: null, amr: null, auth_time: null, sid: null, iss: null,
    // amr and acr in every ID token, as Entra puts them there unasked.
    // oid too, as Entra puts its object id in every ID token.
    openid: ['sub', 'amr', 'acr', 'oid'], profile: ['preferred_username', 'name'], email: ['email'],
  },
  // Put the scope's claims in the ID token (pfgate reads the identity from it, as from Entra's).
  conformIdTokenClaims: false,
  findAccount: async (ctx, id) => (USERS.has(id) ? {
    accountId: id,
    claims: async () => ({
      sub: id, preferred_username: id, email: id, name: id, oid: OIDS[id],
    }),
  } : undefined),
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
  loadExistingGrant: async (ctx) => {
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope('openid profile email');
    await grant.save();
    return grant;
  },
});

const loginPage = (uid, error) => `<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Test IdP sign-in</title></head>
<body><h1>Test IdP sign-in</h1>${error ? `<p id="error">${esc(error)}</p>` : ''}
<form method="post" action="/interaction/${esc(uid)}/login">
<label for="login">Username</label> <input id="login" name="login" autocomplete="username">
<label for="password">Password</label> <input id="password" name="password" type="password">
<label for="otp">One-time code (multi-factor)</label> <input id="otp" name="otp" inputmode="numeric">
<button id="submit" type="submit">Sign in</button></form></body></html>`;

const readForm = (req) => new Promise((resolve, reject) => {
  let body = '';
  req.on('data', (c) => {
    body += c;
    if (body.length > 8192) reject(new Error('form too large'));
  });
  req.on('end', () => resolve(new URLSearchParams(body)));
  req.on('error', reject);
});

provider.use(async (ctx, next) => {
  const m = ctx.path.match(/^\/interaction\/([^/]+)(\/login)?$/);
  if (!m) return next();
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  if (details.prompt.name !== 'login') {
    // Consent is covered by loadExistingGrant; anything else finishes as is.
    await provider.interactionFinished(ctx.req, ctx.res, {}, { mergeWithLastSubmission: true });
    return undefined;
  }
  if (ctx.method === 'GET' && !m[2]) {
    ctx.type = 'html';
    ctx.body = loginPage(details.uid);
    return undefined;
  }
  if (ctx.method === 'POST' && m[2]) {
    const form = await readForm(ctx.req);
    const login = form.get('login') || '';
    if (!USERS.has(login) || form.get('password') !== PASSWORD) {
      ctx.type = 'html';
      ctx.body = loginPage(details.uid, 'Wrong username or password.');
      return undefined;
    }
    const mfa = form.get('otp') === OTP;
    const amr = mfa ? ['pwd', 'otp', 'mfa'] : ['pwd'];
    await provider.interactionFinished(ctx.req, ctx.res, {
      login: {
        accountId: login, amr, acr: mfa ? 'mfa' : 'pwd', remember: false,
        ...(authTimeOffset ? { ts: Math.floor(Date.now() / 1000) + authTimeOffset } : {}),
      },
    }, { mergeWithLastSubmission: false });
    return undefined;
  }
  return next();
});

if (rogue) {
  provider.use(async (ctx, next) => {
    await next();
    if (ctx.path === '/jwks') {
      ctx.body = { keys: [publicOf(other)] };
    }
  });
}

server.on('request', provider.callback());
console.log(`listening on ${issuer}`);
