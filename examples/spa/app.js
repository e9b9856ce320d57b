// A single-page app on oidc-client-ts, with no build step: the authorization code
// flow with PKCE as a public client, tokens fetched from the browser (khoa answers
// CORS for this client's origins), userinfo, refresh with rotation, revocation,
// sign-out with id_token_hint, and a silent prompt=none sign-in.
"use strict";

const here = window.location.origin;
const config = window.KHOA_SPA;
const manager = new oidc.UserManager({
  authority: config.issuer,
  client_id: config.client_id,
  redirect_uri: here + "/callback.html",
  silent_redirect_uri: here + "/silent.html",
  post_logout_redirect_uri: here + "/?signed-out",
  response_type: "code",
  scope: "openid profile offline_access",
  loadUserInfo: true,
  automaticSilentRenew: false,
  userStore: new oidc.WebStorageStateStore({ store: window.sessionStorage }),
});

// Every step is listed on the page (the browser test reads it).
function event(text) {
  const list = document.getElementById("events");
  if (list) {
    const item = document.createElement("li");
    item.textContent = text;
    list.appendChild(item);
  }
  const log = JSON.parse(sessionStorage.getItem("events") || "[]");
  log.push(text);
  sessionStorage.setItem("events", JSON.stringify(log));
}

async function show() {
  const user = await manager.getUser();
  document.getElementById("who").textContent = user
    ? "Signed in as " + (user.profile.name || user.profile.sub) + "."
    : "Not signed in.";
  for (const text of JSON.parse(sessionStorage.getItem("events") || "[]")) {
    const item = document.createElement("li");
    item.textContent = text;
    document.getElementById("events").appendChild(item);
  }
}

async function userinfo(accessToken) {
  const meta = await manager.metadataService.getMetadata();
  const res = await fetch(meta.userinfo_endpoint, { headers: { Authorization: "Bearer " + accessToken } });
  return res.status;
}

const actions = {
  signin: () => manager.signinRedirect(),
  userinfo: async () => {
    const user = await manager.getUser();
    event("userinfo " + (user ? await userinfo(user.access_token) : "no user"));
  },
  refresh: async () => {
    const before = await manager.getUser();
    const after = await manager.signinSilent(); // with a refresh token: the refresh grant
    event("refreshed " + (after.refresh_token !== before.refresh_token ? "rotated" : "same"));
  },
  revoke: async () => {
    const user = await manager.getUser();
    await manager.revokeTokens(["access_token", "refresh_token"]);
    event("revoked, userinfo " + (await userinfo(user.access_token)));
  },
  signout: async () => {
    event("signing out");
    await manager.signoutRedirect(); // sends id_token_hint
  },
  silent: async () => {
    await manager.removeUser(); // no refresh token: an iframe with prompt=none
    try {
      await manager.signinSilent();
      event("silent signed in");
    } catch (e) {
      event("silent " + (e.error || e.message));
    }
  },
};

async function main() {
  const page = window.location.pathname;
  if (page.endsWith("/callback.html")) {
    try {
      const user = await manager.signinRedirectCallback();
      event("signed in " + (user.profile.name || user.profile.sub));
    } catch (e) {
      event("sign-in failed " + (e.error || e.message));
    }
    window.location.replace(here + "/");
    return;
  }
  if (page.endsWith("/silent.html")) {
    await manager.signinSilentCallback();
    return;
  }
  if (new URLSearchParams(window.location.search).has("signed-out")) {
    event("signed out");
    window.history.replaceState(null, "", here + "/");
  }
  for (const [id, action] of Object.entries(actions)) {
    document.getElementById(id).addEventListener("click", () =>
      action().catch((e) => event(id + " failed " + (e.error || e.message))),
    );
  }
  await show();
}

main();
