// A real OpenID provider for tests: panva/oidc-provider issuing RS256 JWT access tokens for one
// resource (the metalplane API audience), by the client credentials grant and by the device
// authorization grant (RFC 8628) with its real end-user pages.
// Usage: node provider.mjs <port> <audience> <clients.json>
//   clients.json: {"clients": [...], "users": [...]} (a bare array is the clients alone)
//   a confidential client: {"client_id", "client_secret", "roles": [...], "tenant": "..."|null}
//     gets client credentials tokens carrying its roles and tenant;
//   a device client: {"client_id", "device": true}, public (no secret, token endpoint auth
//     "none"), may only use the device flow; its tokens carry the roles and tenant of the user
//     who approved it;
//   a user: {"account", "roles": [...], "tenant": "..."|null}: the roles and tenant of the tokens
//     of that account (signed in on the device pages).
// The end user's pages are oidc-provider's own: /device (enter or confirm the user code, or
// abort), then its development login and consent pages (devInteractions): the login form takes
// any account name and any password; an undeclared account's tokens carry no roles (the API then
// denies it everything). The device client must ask for a scope (`api`): oidc-provider issues a
// token only for scopes the user consented to, and without one there is nothing to consent to.
// oidc-provider puts no `interval` in the device authorization response (clients then wait 5 s
// between polls, RFC 8628 3.2); this lab adds "interval": 1 to keep the tests short.
import { readFileSync } from "node:fs";
import Provider from "oidc-provider";
import { exportJWK, generateKeyPair } from "jose";

const DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code";
const POLL_INTERVAL_SECONDS = 1;

const [port, audience, clientsFile] = process.argv.slice(2);
const parsed = JSON.parse(readFileSync(clientsFile, "utf8"));
const { clients, users = [] } = Array.isArray(parsed) ? { clients: parsed } : parsed;
const clientById = Object.fromEntries(clients.map((c) => [c.client_id, c]));
const userByAccount = Object.fromEntries(users.map((u) => [u.account, u]));
const issuer = `http://127.0.0.1:${port}`;

const { privateKey } = await generateKeyPair("RS256", { extractable: true });
const jwk = { ...(await exportJWK(privateKey)), kid: "lab-rs256-1", alg: "RS256", use: "sig" };

function clientMetadata(c) {
  const common = { client_id: c.client_id, redirect_uris: [], response_types: [] };
  if (c.device) {
    return { ...common, token_endpoint_auth_method: "none", grant_types: [DEVICE_GRANT] };
  }
  return { ...common, client_secret: c.client_secret, grant_types: ["client_credentials"] };
}

function rolesAndTenant(entry) {
  return entry ? { roles: entry.roles, tenant: entry.tenant ?? undefined } : {};
}

const provider = new Provider(issuer, {
  clients: clients.map(clientMetadata),
  jwks: { keys: [jwk] },
  findAccount: (ctx, account) => ({ accountId: account, claims: () => ({ sub: account }) }),
  features: {
    devInteractions: { enabled: true },
    deviceFlow: { enabled: true },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => audience,
      getResourceServerInfo: () => ({
        scope: "api",
        audience,
        accessTokenFormat: "jwt",
        jwt: { sign: { alg: "RS256" } },
      }),
    },
  },
  // A user's token (device flow) carries the user's roles; a client's own token its client's.
  extraTokenClaims: (ctx, token) =>
    rolesAndTenant(token.accountId ? userByAccount[token.accountId] : clientById[token.clientId]),
});

provider.use(async (ctx, next) => {
  await next();
  if (ctx.oidc?.route === "device_authorization" && ctx.status === 200) {
    ctx.body.interval = POLL_INTERVAL_SECONDS;
  }
});

provider.listen(Number(port), "127.0.0.1", () => {
  console.log(`oidc-provider ${issuer} ready`);
});
