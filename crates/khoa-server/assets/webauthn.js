(function () {
  "use strict";
  var data = document.getElementById("webauthn-options");
  var form = document.getElementById("webauthn-form");
  var button = document.getElementById("webauthn-start");
  var failed = document.getElementById("webauthn-error");
  if (!data || !form || !button || !window.PublicKeyCredential) return;
  function bytes(s) {
    s = s.replace(/-/g, "+").replace(/_/g, "/");
    while (s.length % 4) s += "=";
    var bin = atob(s), out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out.buffer;
  }
  function text(buf) {
    var a = new Uint8Array(buf), s = "";
    for (var i = 0; i < a.length; i++) s += String.fromCharCode(a[i]);
    return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  function ids(list) {
    (list || []).forEach(function (c) { c.id = bytes(c.id); });
  }
  button.hidden = false;
  button.addEventListener("click", function () {
    failed.hidden = true;
    var pk = JSON.parse(data.textContent).publicKey;
    pk.challenge = bytes(pk.challenge);
    ids(pk.allowCredentials);
    ids(pk.excludeCredentials);
    var creating = !!pk.user;
    if (creating) pk.user.id = bytes(pk.user.id);
    var call = creating ? navigator.credentials.create({ publicKey: pk }) : navigator.credentials.get({ publicKey: pk });
    call.then(function (c) {
      var r = c.response, out = { id: c.id, rawId: text(c.rawId), type: c.type, extensions: {} };
      if (creating) {
        out.response = { attestationObject: text(r.attestationObject), clientDataJSON: text(r.clientDataJSON) };
      } else {
        out.response = { authenticatorData: text(r.authenticatorData), clientDataJSON: text(r.clientDataJSON),
          signature: text(r.signature), userHandle: r.userHandle ? text(r.userHandle) : null };
      }
      form.elements.credential.value = JSON.stringify(out);
      form.submit();
    }).catch(function () { failed.hidden = false; });
  });
})();
