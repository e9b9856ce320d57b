//! Accounts end to end: `khoa serve` mails through a real SMTP server that khoa did not
//! write (Python's aiosmtpd, writing a Maildir), the mails are read back with Python's
//! own `email` parser, and their links are followed in headless Chromium: password
//! reset, the account page (profile, a new address verified by mail, sessions, sign
//! out everywhere) and self-registration, in English and Vietnamese, with screenshots.
//! The command line's `--send-verification` mails through the same server.

use super::browser::{log_in, Browser};
use fantoccini::Locator;
use khoa_testkit::flow::{Khoa, PASSWORD};
use khoa_testkit::{free_port, run_cli, test_database, Backend};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_khoa");
const NEW_PASSWORD: &str = "một mật khẩu mới dài hơn";

/// aiosmtpd on a loopback port, storing every mail in a Maildir.
struct SmtpServer {
    child: Child,
    port: u16,
    maildir: tempfile::TempDir,
}

impl SmtpServer {
    fn start() -> Self {
        Self::start_with(&[])
    }

    /// With aiosmtpd's options `options` (its TLS certificates).
    fn start_with(options: &[&str]) -> Self {
        let maildir = tempfile::tempdir().unwrap();
        let port = free_port();
        let child = Command::new("python3")
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
            .args(options)
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(maildir.path().join("mail"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 -m aiosmtpd (pip install aiosmtpd; the test command does it)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "aiosmtpd did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, port, maildir }
    }

    fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Every mail received so far, oldest first, parsed by Python's `email` package:
    /// recipient, decoded subject, and the plain-text part.
    fn mails(&self) -> Vec<Received> {
        const READ: &str = r#"
import email, email.header, glob, json, os, sys
files = sorted(glob.glob(os.path.join(sys.argv[1], "new", "*")), key=lambda f: (os.path.getmtime(f), f))
out = []
for f in files:
    with open(f, "rb") as fh:
        m = email.message_from_binary_file(fh)
    text = [p.get_payload(decode=True).decode(p.get_content_charset() or "utf-8") for p in m.walk() if p.get_content_type() == "text/plain"]
    html = [p for p in m.walk() if p.get_content_type() == "text/html"]
    subject = str(email.header.make_header(email.header.decode_header(m["Subject"])))
    out.append({"to": m["To"], "from": m["From"], "subject": subject, "text": text[0] if text else "", "html": len(html)})
print(json.dumps(out))
"#;
        let out = Command::new("python3").args(["-c", READ]).arg(self.maildir.path().join("mail")).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout)
            .unwrap()
            .into_iter()
            .map(|m| Received {
                to: m["to"].as_str().unwrap_or("").to_string(),
                subject: m["subject"].as_str().unwrap_or("").to_string(),
                text: m["text"].as_str().unwrap_or("").to_string(),
                has_html: m["html"].as_i64() == Some(1),
            })
            .collect()
    }

    /// Waits until `n` mails have arrived.
    fn wait_for(&self, n: usize) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mails = self.mails();
            if mails.len() >= n {
                return mails;
            }
            assert!(Instant::now() < deadline, "{} mail(s) of {n} arrived: {mails:?}", mails.len());
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug, Clone)]
struct Received {
    to: String,
    subject: String,
    text: String,
    has_html: bool,
}

impl Received {
    /// The one link of the mail that points at `base`.
    fn link(&self, base: &str) -> String {
        let at = self.text.find(base).unwrap_or_else(|| panic!("no link to {base} in {}", self.text));
        self.text[at..].split_whitespace().next().unwrap().to_string()
    }
}

async fn fill(b: &Browser, css: &str, value: &str) {
    let field = b.client.find(Locator::Css(css)).await.unwrap();
    field.clear().await.unwrap();
    field.send_keys(value).await.unwrap();
}

async fn submit(b: &Browser, form: &str) {
    b.click(&format!("{form} button[type=submit]")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_account_page_verification_and_sign_up_by_mail_in_chromium() {
    let smtp = SmtpServer::start();
    let env = [
        ("KHOA_SMTP_URL", smtp.url()),
        ("KHOA_SMTP_FROM", "Cổng SSO <sso@example.vn>".to_string()),
        ("KHOA_SELF_REGISTRATION", "true".to_string()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let khoa = Khoa::with_env(BIN, test_database(Backend::Sqlite).await, &env);
    let base = khoa.url("/");
    let b = Browser::start("en-US").await;

    // The account page sends a newcomer to the login page, which offers a reset.
    b.client.goto(&base).await.unwrap();
    b.wait_for("#username", 10).await;
    b.click("a[href^='/account/password/forgot']").await;
    b.wait_for("#identifier", 10).await;
    b.shot("forgot-en").await;
    // An unknown account first: the same answer, and no mail.
    fill(&b, "#identifier", "nobody@hutech.edu.vn").await;
    submit(&b, "form").await;
    b.wait_for("p.notice", 10).await;
    let unknown = b.text("p.notice").await;
    b.client.goto(&khoa.url("/account/password/forgot")).await.unwrap();
    b.wait_for("#identifier", 10).await;
    fill(&b, "#identifier", "sv01").await;
    submit(&b, "form").await;
    b.wait_for("p.notice", 10).await;
    assert_eq!(b.text("p.notice").await, unknown, "the same words for an account that exists");
    b.shot("forgot-sent-en").await;
    let mails = smtp.wait_for(1);
    assert_eq!(mails.len(), 1, "no mail for the unknown account: {mails:?}");
    let reset = &mails[0];
    assert_eq!(reset.to, "sv01@hutech.edu.vn");
    assert_eq!(reset.subject, "Reset your password · khoa");
    assert!(reset.has_html, "a branded HTML part beside the text");
    let link = reset.link(&khoa.url("/account/password/reset?token="));

    // The link, in the browser: a new password twice.
    b.client.goto(&link).await.unwrap();
    b.wait_for("#confirmation", 10).await;
    b.shot("reset-en").await;
    fill(&b, "#password", NEW_PASSWORD).await;
    fill(&b, "#confirmation", NEW_PASSWORD).await;
    submit(&b, "form").await;
    b.wait_for("p.notice", 10).await;
    assert!(b.text("p.notice").await.contains("Every session has been signed out"));
    // Used once: the same link again is refused.
    b.client.goto(&link).await.unwrap();
    b.wait_for("p.error", 10).await;
    assert!(b.text("p.error").await.contains("can no longer be used"));

    // The account page, signed in with the new password.
    b.client.goto(&base).await.unwrap();
    b.wait_for("#username", 10).await;
    log_in(&b, "sv01", PASSWORD).await;
    b.wait_for(".error", 10).await;
    log_in(&b, "sv01", NEW_PASSWORD).await;
    b.wait_for("#sessions", 10).await;
    assert!(b.text(".intro").await.contains("sv01"));
    assert!(b.text("#sessions").await.contains("This session"));
    b.shot("account-en").await;
    b.js("document.getElementById('sessions').scrollIntoView(); return true").await;
    b.shot("account-sessions-en").await;

    // A new address needs the current password: a mail to it, a notice to the old
    // one, and the address changes once its link is used.
    fill(&b, "#email", "sv01.moi@example.vn").await;
    submit(&b, "#profile").await;
    b.wait_for("p.error", 10).await;
    assert!(b.text("p.error").await.contains("enter your current password"));
    fill(&b, "#email", "sv01.moi@example.vn").await;
    fill(&b, "#email_current_password", NEW_PASSWORD).await;
    submit(&b, "#profile").await;
    b.wait_for("p.notice", 10).await;
    assert!(b.text("p.notice").await.contains("verification mail"));
    let mails = smtp.wait_for(3);
    let verify = mails.iter().find(|m| m.to == "sv01.moi@example.vn").expect("the verification").clone();
    assert_eq!(verify.subject, "Verify your email address · khoa");
    let notice =
        mails.iter().find(|m| m.to == "sv01@hutech.edu.vn" && m.subject.contains("changed")).expect("a notice").clone();
    assert_eq!(notice.subject, "Your email address is being changed · khoa");
    let users = khoa_testkit::stdout_json(&run_cli(BIN, &khoa.db, &["user", "list", "--json"], None));
    assert_eq!(users[0]["email"], "sv01@hutech.edu.vn", "unchanged until verified");
    let verify_link = verify.link(&khoa.url("/account/email/verify?token="));
    b.client.goto(&verify_link.replace("lang=en", "lang=vi")).await.unwrap();
    b.wait_for("button[type=submit]", 10).await;
    b.shot("verify-vi").await;
    b.client.goto(&verify_link).await.unwrap();
    b.wait_for("button[type=submit]", 10).await;
    assert!(b.client.source().await.unwrap().contains("Account: <strong>sv01</strong>"), "the page names who asks");
    b.shot("verify-en").await;
    submit(&b, "form").await;
    b.wait_for("p.notice", 10).await;
    let users = khoa_testkit::stdout_json(&run_cli(BIN, &khoa.db, &["user", "list", "--json"], None));
    assert_eq!(
        (users[0]["email"].as_str(), users[0]["email_verified"].as_bool()),
        (Some("sv01.moi@example.vn"), Some(true))
    );

    b.client.goto(&khoa.url("/account/register")).await.unwrap();
    b.wait_for("#confirmation", 10).await;
    b.shot("register-en").await;
    b.client.goto(&base).await.unwrap();
    b.wait_for("#sessions", 10).await;

    // An application's access, given in the browser, taken back on the page.
    let lms = [
        "client",
        "create",
        "--id",
        "lms",
        "--redirect-uri",
        "http://127.0.0.1:9/callback",
        "--name",
        "Học trực tuyến",
    ];
    assert!(run_cli(BIN, &khoa.db, &lms, None).status.success());
    let consent = "/oauth2/auth?client_id=lms&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcallback&response_type=code&scope=openid%20profile";
    b.client.goto(&khoa.url(consent)).await.unwrap();
    b.wait_for("button[value=allow]", 10).await;
    b.click("button[value=allow]").await;
    tokio::time::sleep(Duration::from_millis(500)).await; // the callback is not served
    b.client.goto(&base).await.unwrap();
    b.wait_for("#apps form", 10).await;
    assert!(b.text("#apps").await.contains("Học trực tuyến"));
    b.js("document.getElementById('apps').scrollIntoView(); return true").await;
    b.shot("account-apps-en").await;
    b.click("#apps form button").await;
    b.wait_for("p.notice", 10).await;
    assert!(b.text("p.notice").await.contains("access has been revoked"));
    assert!(!b.has("#apps form").await, "the application is gone from the list");

    // Vietnamese, by Accept-Language, in a second browser: a second session.
    let vi = Browser::start("vi").await;
    vi.client.goto(&base).await.unwrap();
    vi.wait_for("#username", 10).await;
    assert!(vi.client.source().await.unwrap().contains("Quên mật khẩu?"));
    log_in(&vi, "sv01", NEW_PASSWORD).await;
    vi.wait_for("#sessions", 10).await;
    assert_eq!(vi.js("return document.documentElement.lang").await, "vi");
    assert!(vi.client.source().await.unwrap().contains("Tài khoản của bạn"));
    assert_eq!(vi.js("return document.querySelectorAll('#sessions li').length").await, 2);
    vi.shot("account-vi").await;
    // Sign out the other (English) session from here: that browser is signed out.
    vi.click("#sessions li:not(:has(.badge)) form button").await;
    vi.wait_for("p.notice", 10).await;
    assert!(vi.text("p.notice").await.contains("Đã kết thúc phiên đăng nhập đó."));
    assert_eq!(vi.js("return document.querySelectorAll('#sessions li').length").await, 1);
    b.client.goto(&base).await.unwrap();
    b.wait_for("#username", 10).await;
    // A new password, with the current one; this session stays.
    const THIRD: &str = "mật khẩu thứ ba đủ dài";
    fill(&vi, "#current_password", NEW_PASSWORD).await;
    fill(&vi, "#password", THIRD).await;
    fill(&vi, "#confirmation", THIRD).await;
    submit(&vi, "#password-change").await;
    vi.wait_for("p.notice", 10).await;
    assert!(vi.text("p.notice").await.contains("Đã đổi mật khẩu."));
    // Sign out everywhere from the English browser: the Vietnamese one is signed out too.
    log_in(&b, "sv01", THIRD).await;
    b.wait_for("#sessions", 10).await;
    b.click("#sessions > form button").await;
    b.wait_for("p.notice", 10).await;
    assert!(b.text("p.notice").await.contains("signed out everywhere"));
    for browser in [&b, &vi] {
        browser.client.goto(&base).await.unwrap();
        browser.wait_for("#username", 10).await;
    }
    b.close().await;
    vi.client.goto(&khoa.url("/account/password/forgot")).await.unwrap();
    vi.wait_for("#identifier", 10).await;
    vi.shot("forgot-vi").await;
    fill(&vi, "#identifier", "sv01.moi@example.vn").await;
    submit(&vi, "form").await;
    vi.wait_for("p.notice", 10).await;
    let reset_vi = smtp.wait_for(4)[3].clone();
    assert_eq!((reset_vi.to.as_str(), reset_vi.subject.as_str()), ("sv01.moi@example.vn", "Đặt lại mật khẩu · khoa"));
    vi.client.goto(&reset_vi.link(&khoa.url("/account/password/reset?token="))).await.unwrap();
    vi.wait_for("#confirmation", 10).await;
    assert_eq!(vi.js("return document.documentElement.lang").await, "vi");
    vi.shot("reset-vi").await;

    // Self-registration: a mail to the address given; the account exists once its
    // link is used, and signs in.
    vi.client.goto(&khoa.url("/account/register")).await.unwrap();
    vi.wait_for("#confirmation", 10).await;
    vi.shot("register-vi").await;
    fill(&vi, "#username", "sv99").await;
    fill(&vi, "#email", "sv99@example.vn").await;
    fill(&vi, "#name", "Trần Thị B").await;
    fill(&vi, "#password", PASSWORD).await;
    fill(&vi, "#confirmation", PASSWORD).await;
    submit(&vi, "form").await;
    vi.wait_for("p.notice", 10).await;
    let signup = smtp.wait_for(5)[4].clone();
    assert_eq!((signup.to.as_str(), signup.subject.as_str()), ("sv99@example.vn", "Hoàn tất tạo tài khoản · khoa"));
    let users = khoa_testkit::stdout_json(&run_cli(BIN, &khoa.db, &["user", "list", "--json"], None));
    assert_eq!(users.as_array().unwrap().len(), 1, "no account before the link is used");
    vi.client.goto(&signup.link(&khoa.url("/account/register/complete?token="))).await.unwrap();
    vi.wait_for("button[type=submit]", 10).await;
    submit(&vi, "form").await;
    vi.wait_for("p.notice", 10).await;
    assert!(vi.client.source().await.unwrap().contains("Tài khoản của bạn đã sẵn sàng"));
    let users = khoa_testkit::stdout_json(&run_cli(BIN, &khoa.db, &["user", "list", "--json"], None));
    let created = users.as_array().unwrap().iter().find(|u| u["username"] == "sv99").expect("sv99 created");
    assert_eq!((created["email"].as_str(), created["email_verified"].as_bool()), (Some("sv99@example.vn"), Some(true)));

    // The notice of the address change, read at the old address: its "it was not me"
    // page in both languages, then used: the old address is back, every session ends.
    let report = notice.link(&khoa.url("/account/email/report?token="));
    vi.client.goto(&report.replace("lang=en", "lang=vi")).await.unwrap();
    vi.wait_for("button[type=submit]", 10).await;
    vi.shot("report-vi").await;
    vi.client.goto(&report).await.unwrap();
    vi.wait_for("button[type=submit]", 10).await;
    vi.shot("report-en").await;
    submit(&vi, "form").await;
    vi.wait_for("p.notice", 10).await;
    assert!(vi.client.source().await.unwrap().contains("The change is cancelled"));
    let users = khoa_testkit::stdout_json(&run_cli(BIN, &khoa.db, &["user", "list", "--json"], None));
    let sv01 = users.as_array().unwrap().iter().find(|u| u["username"] == "sv01").unwrap();
    assert_eq!((sv01["email"].as_str(), sv01["email_verified"].as_bool()), (Some("sv01@hutech.edu.vn"), Some(true)));
    vi.close().await;

    // The command line mails a verification link too (in English when asked).
    let args = [
        "user",
        "create",
        "--username",
        "gv01",
        "--password-stdin",
        "--email",
        "gv01@example.vn",
        "--send-verification",
        "--mail-language",
        "en",
    ];
    let out = khoa_testkit::run_cli_with(BIN, &khoa.db, &env, &args, Some(PASSWORD));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cli = smtp.wait_for(6)[5].clone();
    assert_eq!((cli.to.as_str(), cli.subject.as_str()), ("gv01@example.vn", "Verify your email address · khoa"));
    // And an import, to each new user whose address is not verified yet.
    let hash = "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW";
    let lines = [
        serde_json::json!({"username": "imp1", "password_hash": hash, "email": "imp1@example.vn"}),
        serde_json::json!({"username": "imp2", "password_hash": hash, "email": "imp2@example.vn", "email_verified": true}),
    ];
    let file = khoa.db.dir.path().join("users.jsonl");
    std::fs::write(&file, lines.iter().map(|l| l.to_string()).collect::<Vec<_>>().join("\n")).unwrap();
    let path = file.display().to_string();
    let out = khoa_testkit::run_cli_with(BIN, &khoa.db, &env, &["user", "import", &path, "--send-verification"], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let all = smtp.mails(); // the command delivered before it exited
    assert_eq!(all.len(), 7, "one mail, to the unverified address only");
    assert_eq!((all[6].to.as_str(), all[6].subject.as_str()), ("imp1@example.vn", "Xác minh địa chỉ email · khoa"));
    let logs = khoa.process().logs();
    for secret in [link.as_str(), NEW_PASSWORD] {
        let token = secret.split("token=").nth(1).unwrap_or(secret);
        assert!(!logs.contains(token), "a link or password in the server's log");
    }
}

/// A test CA and a certificate it signed for 127.0.0.1 (Python's cryptography).
fn certificates(dir: &std::path::Path) {
    const GENERATE: &str = r#"
import datetime, ipaddress, os, sys
from cryptography import x509
from cryptography.x509.oid import NameOID, ExtendedKeyUsageOID
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
out, now = sys.argv[1], datetime.datetime.now(datetime.timezone.utc)
day = datetime.timedelta(days=1)
ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "khoa test CA")])
def base(subject, public):
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(ca_name).public_key(public)
            .serial_number(x509.random_serial_number()).not_valid_before(now - day).not_valid_after(now + 2 * day))
ca = (base(ca_name, ca_key.public_key()).add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
      .sign(ca_key, hashes.SHA256()))
cert = (base(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]), key.public_key())
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256()))
for name, data in [("ca.pem", ca.public_bytes(serialization.Encoding.PEM)),
                   ("cert.pem", cert.public_bytes(serialization.Encoding.PEM)),
                   ("key.pem", key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption()))]:
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)
"#;
    let out = Command::new("python3").args(["-c", GENERATE]).arg(dir).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// `smtp://…?tls=required` (STARTTLS) and `smtps://…` (implicit TLS) deliver to servers
/// whose certificate the system's CA store (here `SSL_CERT_FILE`) vouches for, and
/// refuse a server it does not: the mail is not sent in clear instead.
#[tokio::test]
async fn mail_goes_over_starttls_and_implicit_tls_to_a_trusted_server_only() {
    let certs = tempfile::tempdir().unwrap();
    certificates(certs.path());
    let file = |name: &str| certs.path().join(name).display().to_string();
    let (cert, key, ca) = (file("cert.pem"), file("key.pem"), file("ca.pem"));
    let starttls = SmtpServer::start_with(&["--tlscert", &cert, "--tlskey", &key]);
    let implicit = SmtpServer::start_with(&["--smtpscert", &cert, "--smtpskey", &key]);
    let db = test_database(Backend::Sqlite).await;
    assert!(run_cli(BIN, &db, &["migrate"], None).status.success());
    let cases = [
        ("starttls", format!("smtp://127.0.0.1:{}?tls=required", starttls.port), &starttls),
        ("smtps", format!("smtps://127.0.0.1:{}", implicit.port), &implicit),
    ];
    for (name, url, server) in &cases {
        let env =
            [("KHOA_SMTP_URL", url.as_str()), ("KHOA_SMTP_FROM", "sso@example.vn"), ("SSL_CERT_FILE", ca.as_str())];
        let email = format!("{name}@example.vn");
        let args = ["user", "create", "--username", name, "--password-stdin", "--email", &email, "--send-verification"];
        let out = khoa_testkit::run_cli_with(BIN, &db, &env, &args, Some(PASSWORD));
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        let mails = server.wait_for(1);
        assert_eq!(
            (mails[0].to.as_str(), mails[0].subject.as_str()),
            (email.as_str(), "Xác minh địa chỉ email · khoa")
        );
    }
    // Without the test CA the certificate is refused, and nothing is delivered.
    let url = format!("smtp://127.0.0.1:{}?tls=required", starttls.port);
    let env = [("KHOA_SMTP_URL", url.as_str()), ("KHOA_SMTP_FROM", "sso@example.vn"), ("SSL_CERT_FILE", "/dev/null")];
    let args = [
        "user",
        "create",
        "--username",
        "untrusted",
        "--password-stdin",
        "--email",
        "u@example.vn",
        "--send-verification",
    ];
    let out = khoa_testkit::run_cli_with(BIN, &db, &env, &args, Some(PASSWORD));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("the verification mail to u@example.vn could not be sent"), "{stderr}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(starttls.mails().len(), 1, "nothing more arrived");
}
