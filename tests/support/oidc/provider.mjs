// A real, certified OpenID provider (npm `oidc-provider`) for provisioner's end-to-end tests.
//
// Usage: node provider.mjs <config.json>. The pytest fixture in tests/support/oidc_server.py
// writes the config (port, signing key, clients, accounts, resource) and waits for discovery.
// Everything listens on 127.0.0.1 and every page is self-contained (no external fonts), so
// a test browser never leaves the loopback interface.
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';

import Provider, { errors } from '../../node/node_modules/oidc-provider/lib/index.js';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const issuer = config.issuer;
const accounts = config.accounts;

const page = (title, body) => `<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>${title}</title></head><body>${body}</body></html>`;

const provider = new Provider(issuer, {
  clients: config.clients,
  jwks: { keys: config.keys },
  cookies: { keys: [config.cookie_secret] },
  // Email, name and groups go into the id_token itself (provisioner reads them there).
  conformIdTokenClaims: false,
  scopes: ['openid', 'email', 'profile', 'groups', ...config.api_scopes],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
    groups: ['groups'],
  },
  features: {
    devInteractions: { enabled: true },
    clientCredentials: { enabled: true },
    rpInitiatedLogout: {
      enabled: true,
      async logoutSource(ctx, form) {
        ctx.body = page('Sign out', `${form}<h1>Sign out of the identity provider?</h1>
<button autofocus type="submit" form="op.logoutForm" value="yes" name="logout">Yes, sign me out</button>
<button type="submit" form="op.logoutForm">No, stay signed in</button>`);
      },
      async postLogoutSuccessSource(ctx) {
        ctx.body = page('Signed out', '<h1>Signed out</h1>');
      },
    },
    resourceIndicators: {
      enabled: true,
      defaultResource: async (ctx, client, oneOf) => oneOf,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (ctx, resourceIndicator, client) => {
        const server = config.resources[resourceIndicator];
        if (!server) throw new errors.InvalidTarget();
        return {
          scope: server.scope,
          audience: server.audience,
          accessTokenTTL: (config.token_ttl || {})[client.clientId] || 600,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
  async findAccount(ctx, id) {
    const account = accounts[id];
    if (!account) return undefined;
    return {
      accountId: id,
      async claims() {
        return { sub: id, email_verified: true, ...account };
      },
    };
  },
  // Skip the consent page: the organisation's own apps are pre-approved.
  async loadExistingGrant(ctx) {
    const grantId = ctx.oidc.result?.consent?.grantId
      || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) {
      const existing = await ctx.oidc.provider.Grant.find(grantId);
      if (existing) return existing;
    }
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope('openid email profile groups');
    grant.addOIDCClaims(['email', 'email_verified', 'name', 'groups']);
    await grant.save();
    return grant;
  },
  renderError(ctx, out) {
    ctx.type = 'html';
    ctx.body = page('Error', `<h1>${out.error}</h1><p>${out.error_description || ''}</p>`);
  },
});

createServer(provider.callback()).listen(config.port, '127.0.0.1', () => {
  process.stdout.write(`listening ${issuer}\n`);
});
process.on('SIGTERM', () => process.exit(0));
