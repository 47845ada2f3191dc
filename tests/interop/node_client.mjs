// Gets tokens with one JavaScript managed identity client, configured only by the environment, and prints one
// JSON line per case: the claims that matter (never the token). Run by tests/interop/test_interop.py as
//   node --require ./guard.cjs node_client.mjs CLIENT RESOURCE [CLIENT_ID ...]   ("-": system-assigned)
// CLIENT: @azure/identity or @azure/msal-node.
import { ManagedIdentityCredential } from "@azure/identity";
import { ManagedIdentityApplication } from "@azure/msal-node";

function claimsOf(token) {
  const parts = String(token).split(".");
  if (parts.length !== 3) return null;
  try {
    return JSON.parse(Buffer.from(parts[1], "base64url").toString("utf8"));
  } catch {
    return null;
  }
}

function outcome(token, error) {
  if (!token) {
    const text = error ? `${error.name || "Error"}: ${error.message}` : "no token";
    return { ok: false, error: text.slice(0, 400) };
  }
  const claims = claimsOf(token);
  if (!claims) return { ok: false, error: "the access token is not a JWT" };
  return { ok: true, aud: claims.aud, appid: claims.appid };
}

async function azureIdentity(resource, clientId) {
  try {
    const credential = clientId ? new ManagedIdentityCredential({ clientId }) : new ManagedIdentityCredential();
    const token = await credential.getToken(`${resource}/.default`);
    return outcome(token && token.token);
  } catch (error) {
    return outcome(null, error);
  }
}

async function msalNode(resource, clientId) {
  try {
    const application = new ManagedIdentityApplication(
      clientId ? { managedIdentityIdParams: { userAssignedClientId: clientId } } : {},
    );
    const result = await application.acquireToken({ resource });
    return outcome(result && result.accessToken);
  } catch (error) {
    return outcome(null, error);
  }
}

const CLIENTS = { "@azure/identity": azureIdentity, "@azure/msal-node": msalNode };

const [client, resource, ...identities] = process.argv.slice(2);
for (const identity of identities.length ? identities : ["-"]) {
  const result = await CLIENTS[client](resource, identity === "-" ? undefined : identity);
  process.stdout.write(JSON.stringify({ identity, ...result }) + "\n");
}
