// A real OpenID provider for tests: panva/oidc-provider with the client credentials grant
// issuing RS256 JWT access tokens for one resource (the metalplane API audience).
// Usage: node provider.mjs <port> <audience> <clients.json>
//   clients.json: [{"client_id", "client_secret", "roles": [...], "tenant": "..."|null}]
import { readFileSync } from "node:fs";
import Provider from "oidc-provider";
import { exportJWK, generateKeyPair } from "jose";

const [port, audience, clientsFile] = process.argv.slice(2);
const clients = JSON.parse(readFileSync(clientsFile, "utf8"));
const byId = Object.fromEntries(clients.map((c) => [c.client_id, c]));
const issuer = `http://127.0.0.1:${port}`;

const { privateKey } = await generateKeyPair("RS256", { extractable: true });
const jwk = { ...(await exportJWK(privateKey)), kid: "lab-rs256-1", alg: "RS256", use: "sig" };

const provider = new Provider(issuer, {
  clients: clients.map((c) => ({
    client_id: c.client_id,
    client_secret: c.client_secret,
    grant_types: ["client_credentials"],
    redirect_uris: [],
    response_types: [],
  })),
  jwks: { keys: [jwk] },
  features: {
    devInteractions: { enabled: false },
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
  extraTokenClaims: (ctx, token) => {
    const client = byId[token.clientId];
    return client ? { roles: client.roles, tenant: client.tenant ?? undefined } : {};
  },
});

provider.listen(Number(port), "127.0.0.1", () => {
  console.log(`oidc-provider ${issuer} ready`);
});
