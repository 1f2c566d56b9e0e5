// The local trial's OpenID provider: the repository's own tests/support/oidc/provider.mjs
// (npm `oidc-provider`, pinned in tests/node/package-lock.json), configured here from the
// environment and the trial's secret files instead of a pytest fixture.
//
// provider.mjs binds 127.0.0.1, which other containers cannot reach; this wrapper binds
// OIDC_LISTEN_HOST instead (0.0.0.0 inside the compose network). The signing key is made
// afresh on every start (provisioner refetches the JWKS on an unknown `kid`).
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';

const env = (name, fallback) => {
  const value = process.env[name] ?? fallback;
  if (value === undefined) throw new Error(`${name} is not set`);
  return value;
};
const secret = (name) => readFileSync(`${env('OIDC_SECRETS_DIR', '/run/trial-secrets')}/${name}`, 'utf8').trim();

const issuer = env('OIDC_ISSUER');                 // e.g. http://oidc.localhost:9000
const appBase = env('OIDC_APP_BASE');              // e.g. http://localhost:8000
const listenHost = env('OIDC_LISTEN_HOST', '0.0.0.0');
const port = Number(new URL(issuer).port || 80);
const scopes = 'meetings:read meetings:write meetings:write:on_behalf';

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwk = { ...privateKey.export({ format: 'jwk' }), kid: `trial-${randomBytes(4).toString('hex')}`, use: 'sig', alg: 'RS256' };

const config = {
  issuer,
  port,
  cookie_secret: randomBytes(24).toString('base64url'),
  keys: [jwk],
  // Sign in as one of these ids on the provider's login page (any password).
  accounts: {
    dana: { email: 'dana@example.com', name: 'Dana Host', groups: ['employees'] },
    erin: { email: 'erin@example.com', name: 'Erin Other', groups: ['employees'] },
    ivan: { email: 'ivan@example.com', name: 'Ivan IT', groups: ['it-admins'] },
  },
  clients: [
    {
      client_id: 'provisioner-web',
      client_secret: secret('oidc_web_client_secret'),
      grant_types: ['authorization_code'],
      response_types: ['code'],
      redirect_uris: [`${appBase}/auth/callback`],
      post_logout_redirect_uris: [`${appBase}/auth/signed-out`],
      token_endpoint_auth_method: 'client_secret_basic',
    },
    {
      client_id: 'calendar-sync',
      client_secret: secret('oidc_calendar_sync_secret'),
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
      scope: scopes,
    },
  ],
  resources: { 'urn:provisioner:api': { scope: scopes, audience: 'provisioner' } },
  token_ttl: {},
  api_scopes: scopes.split(' '),
};
const configPath = env('OIDC_CONFIG_PATH', '/tmp/oidc-config.json');
writeFileSync(configPath, JSON.stringify(config), { mode: 0o600 });

const listen = http.Server.prototype.listen;
http.Server.prototype.listen = function patchedListen(portArg, host, ...rest) {
  return listen.call(this, portArg, host === '127.0.0.1' ? listenHost : host, ...rest);
};
process.argv[2] = configPath;
await import(env('OIDC_PROVIDER_SCRIPT', '/app/tests/support/oidc/provider.mjs'));
