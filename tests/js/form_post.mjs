// openid-client 6 as a confidential relying party with response_mode=form_post, for
// crates/khoa/tests/browser_apps.rs:
//   node form_post.mjs url ISSUER CLIENT_ID SECRET REDIRECT_URI
//     → {"url", "verifier", "state"}: the authorization request to follow
//   node form_post.mjs callback ISSUER CLIENT_ID SECRET REDIRECT_URI BODY VERIFIER STATE
//     → {"claims", "access_token"}: BODY is what the form_post page posted
import * as client from "openid-client";

const [mode, issuer, clientId, secret, redirectUri, ...rest] = process.argv.slice(2);
const config = await client.discovery(new URL(issuer), clientId, secret, undefined, {
  execute: [client.allowInsecureRequests], // the test server is http on loopback
});
if (mode === "url") {
  const verifier = client.randomPKCECodeVerifier();
  const state = client.randomState();
  const url = client.buildAuthorizationUrl(config, {
    redirect_uri: redirectUri,
    scope: "openid profile",
    code_challenge: await client.calculatePKCECodeChallenge(verifier),
    code_challenge_method: "S256",
    state,
    response_mode: "form_post",
  });
  console.log(JSON.stringify({ url: url.href, verifier, state }));
} else {
  const [body, verifier, state] = rest;
  const posted = new Request(redirectUri, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body,
  });
  const tokens = await client.authorizationCodeGrant(config, posted, {
    pkceCodeVerifier: verifier,
    expectedState: state,
  });
  console.log(JSON.stringify({ claims: tokens.claims(), access_token: tokens.access_token }));
}
