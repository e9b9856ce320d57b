// Where khoa is and which client this app is (scripts/demo.sh and the tests serve
// their own). The client: `khoa client create --id spa --public --skip-consent
// --redirect-uri ORIGIN/callback.html --redirect-uri ORIGIN/silent.html
// --post-logout-redirect-uri 'ORIGIN/?signed-out' --always-issue-refresh-token`.
window.KHOA_SPA = { issuer: "http://localhost:8080", client_id: "spa" };
