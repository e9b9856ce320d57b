//! The storage test suite: every test runs against SQLite and against PostgreSQL.

use khoa_core::audit::{Actor, Event};
use khoa_core::client::{ClientLifetimes, ClientRegistration, GrantType, SecretChoice};
use khoa_core::code::AuthorizationCode;
use khoa_core::jose::SigningAlgorithm;
use khoa_core::keyring::KeyTimeline;
use khoa_core::session::{Interaction, Session};
use khoa_core::throttle::{OnSuccess, Reservation, ThrottleKey, ThrottlePolicy};
use khoa_core::user::NewUser;
use khoa_store::prelude::*;
use khoa_store::{
    AuditFilter, CodeCheck, EndedSessions, Expiring, NewAccessToken, Redemption, RefreshFor, RefreshSuccessor,
    RefreshToken, Rotation, StoreError, StoredKey, Updated, UserChange, UserQuery, UserRef,
};
use khoa_testkit::{both_backends, TestDatabase};
use std::sync::Arc;

async fn open(db: &TestDatabase) -> Arc<dyn Store> {
    let store = khoa_store::connect(&db.url).await.unwrap();
    store.migrate().await.unwrap();
    assert_eq!(store.backend(), db.backend);
    store
}

fn full_client(id: &str) -> khoa_core::client::Client {
    let mut r = ClientRegistration::new(id);
    r.redirect_uris = vec!["https://app.example/cb".into(), "http://127.0.0.1:9000/cb".into()];
    r.post_logout_redirect_uris = vec!["https://app.example/bye".into()];
    r.frontchannel_logout_uri = Some("https://app.example/fc".into());
    r.backchannel_logout_uri = Some("https://app.example/bc".into());
    r.grant_types = Some(vec![GrantType::AuthorizationCode, GrantType::RefreshToken, GrantType::ClientCredentials]);
    r.scopes = Some("openid profile api:read".into());
    r.skip_consent = true;
    r.client_name = Some("Ứng dụng mẫu".into());
    r.logo_uri = Some("https://app.example/logo.png".into());
    r.client_uri = Some("https://app.example".into());
    r.policy_uri = Some("https://app.example/policy".into());
    r.tos_uri = Some("https://app.example/tos".into());
    r.owner = Some("Phòng CNTT".into());
    r.contacts = vec!["it@app.example".into()];
    r.allowed_origins = vec!["https://spa.app.example".into(), "http://127.0.0.1:5173".into()];
    r.resource_server = true;
    r.require_mfa = true;
    r.metadata = Some(serde_json::json!({"tenant": 7, "tags": ["a"]}));
    r.id_token_signed_response_alg = Some(SigningAlgorithm::ES256);
    r.lifetimes = ClientLifetimes {
        authorization_code: Some(30),
        access_token: Some(900),
        id_token: Some(1200),
        refresh_token: None,
    };
    r.secret = SecretChoice::Given("0123456789abcdef0123456789abcdef".into());
    r.secret_method = Some(khoa_core::client::SecretMethod::ClientSecretPost);
    r.register(1_700_000_000).unwrap().client
}

fn new_user(username: &str) -> NewUser {
    NewUser {
        username: username.into(),
        password_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into()),
        email: Some(format!("{username}@example.vn")),
        email_verified: true,
        name: Some("Nguyễn Văn A".into()),
        phone_number: Some("+84976535298".into()),
        phone_number_verified: false,
        picture: None,
        attributes: Default::default(),
        created_at: 1_700_000_000,
    }
}

fn key(kid: &str, alg: SigningAlgorithm, generation: i64) -> StoredKey {
    StoredKey {
        timeline: KeyTimeline { kid: kid.into(), alg, generation, created_at: 10, activates_at: 20 },
        public_jwk: format!("{{\"kid\":\"{kid}\"}}"),
        private_key_sealed: vec![0, 1, 2, 255],
    }
}

fn user_event() -> Event {
    Event::new(1_700_000_000, "user.changed", Actor::CommandLine)
}

fn audit(kind: &'static str, client_id: &str) -> Event {
    Event::new(1_700_000_000, kind, Actor::CommandLine).client(client_id)
}

async fn clients_round_trip_every_field(db: TestDatabase) {
    let store = open(&db).await;
    let client = full_client("portal");
    store.insert_client(&client, &audit("client.created", "portal")).await.unwrap();
    let stored = store.client("portal").await.unwrap().unwrap();
    assert_eq!(stored.revision, 1);
    assert_eq!(stored, khoa_core::client::Client { revision: 1, ..client.clone() });
    assert!(matches!(
        store.insert_client(&client, &audit("client.created", "portal")).await,
        Err(StoreError::Conflict("client"))
    ));
    store.insert_client(&full_client("another"), &audit("client.created", "another")).await.unwrap();
    let ids: Vec<_> = store.clients().await.unwrap().into_iter().map(|c| c.client_id).collect();
    assert_eq!(ids, ["another", "portal"]);
    assert_eq!(store.longest_client_token_lifetime().await.unwrap(), Some(1200));
    // An update replaces every field (a rotation's overlap included) and moves the epoch.
    let epoch = store.change_epoch().await.unwrap();
    let mut reg = ClientRegistration::from_client(&client);
    reg.allowed_origins = vec!["https://spa.example".into()];
    reg.skip_consent = false;
    let updated = reg.register_update(&client, 1_700_000_100).unwrap().client;
    let (rotated, _) = ClientRegistration::rotate_secret(&updated, Some(1_700_000_500), 1_700_000_100).unwrap();
    assert_eq!(
        store.update_client(&rotated, None, &audit("client.updated", "portal")).await.unwrap(),
        Updated::Done(2)
    );
    assert_eq!(
        store.client("portal").await.unwrap(),
        Some(khoa_core::client::Client { revision: 2, ..rotated.clone() })
    );
    assert!(store.change_epoch().await.unwrap() > epoch);
    let mut unknown = rotated.clone();
    unknown.client_id = "no-such-client".into();
    assert_eq!(store.update_client(&unknown, None, &audit("client.updated", "x")).await.unwrap(), Updated::Missing);
    assert!(store.delete_client("portal", &audit("client.deleted", "portal")).await.unwrap());
    assert!(!store.delete_client("portal", &audit("client.deleted", "portal")).await.unwrap());
    assert_eq!(store.client("portal").await.unwrap(), None);
    assert_eq!(store.client("no-such-client").await.unwrap(), None);
    // Each change that happened is recorded once; the refused ones are not.
    let all = store.audit_events(&AuditFilter { limit: 100, ..Default::default() }).await.unwrap();
    let kinds: Vec<(&str, Option<&str>)> = all.iter().map(|e| (e.kind.as_str(), e.client_id.as_deref())).collect();
    assert_eq!(
        kinds,
        [
            ("client.deleted", Some("portal")),
            ("client.updated", Some("portal")),
            ("client.created", Some("another")),
            ("client.created", Some("portal")),
        ]
    );
}

/// If-Match: of two updates from the same revision, exactly one is written, and a
/// refused update leaves no audit record.
async fn client_updates_are_conditional(db: TestDatabase) {
    let store = open(&db).await;
    store.insert_client(&full_client("portal"), &audit("client.created", "portal")).await.unwrap();
    let read = store.client("portal").await.unwrap().unwrap();
    let mut a = read.clone();
    a.client_name = Some("A".into());
    let mut b = read.clone();
    b.client_name = Some("B".into());
    let event = audit("client.updated", "portal");
    let (ra, rb) = tokio::join!(
        store.update_client(&a, Some(read.revision), &event),
        store.update_client(&b, Some(read.revision), &event),
    );
    let outcomes = [ra.unwrap(), rb.unwrap()];
    assert_eq!(outcomes.iter().filter(|o| **o == Updated::Done(2)).count(), 1, "{outcomes:?}");
    assert_eq!(outcomes.iter().filter(|o| **o == Updated::Stale).count(), 1, "{outcomes:?}");
    let winner = if outcomes[0] == Updated::Done(2) { "A" } else { "B" };
    assert_eq!(store.client("portal").await.unwrap().unwrap().client_name.as_deref(), Some(winner));
    let updates = AuditFilter { kind: Some("client.updated".into()), limit: 10, ..Default::default() };
    assert_eq!(store.audit_events(&updates).await.unwrap().len(), 1);
}

async fn audit_events_filter_and_page(db: TestDatabase) {
    let store = open(&db).await;
    for i in 0..25 {
        let mut event =
            Event::new(1_000 + i, if i % 2 == 0 { "login.succeeded" } else { "login.failed" }, Actor::Anonymous)
                .detail(serde_json::json!({"n": i}));
        event.user_id = Some(i % 3);
        event.client_id = Some(format!("c{}", i % 5));
        store.record(&event).await.unwrap();
    }
    let page = |before_id, limit| AuditFilter { before_id, limit, ..Default::default() };
    let first = store.audit_events(&page(None, 10)).await.unwrap();
    assert_eq!(first.len(), 10);
    assert_eq!(first[0].detail, serde_json::json!({"n": 24}), "newest first");
    let second = store.audit_events(&page(first.last().map(|e| e.id), 10)).await.unwrap();
    let third = store.audit_events(&page(second.last().map(|e| e.id), 10)).await.unwrap();
    assert_eq!(third.len(), 5);
    let ns: Vec<i64> = first.iter().chain(&second).chain(&third).map(|e| e.detail["n"].as_i64().unwrap()).collect();
    assert_eq!(ns, (0..25).rev().collect::<Vec<_>>());
    let failed_user_1 =
        AuditFilter { kind: Some("login.failed".into()), user_id: Some(1), limit: 100, ..Default::default() };
    let got: Vec<i64> = store.audit_events(&failed_user_1).await.unwrap().iter().map(|e| e.at - 1_000).collect();
    assert_eq!(got, [19, 13, 7, 1]);
    let since = AuditFilter { client_id: Some("c0".into()), since: Some(1_010), limit: 100, ..Default::default() };
    let got: Vec<i64> = store.audit_events(&since).await.unwrap().iter().map(|e| e.at - 1_000).collect();
    assert_eq!(got, [20, 15, 10]);
    assert_eq!(first[0].actor, "anonymous");
    // Retention: bounded batches, oldest first.
    assert_eq!(store.delete_audit_events_before(1_020, 8).await.unwrap(), 8);
    assert_eq!(store.delete_audit_events_before(1_020, 8).await.unwrap(), 8);
    assert_eq!(store.delete_audit_events_before(1_020, 8).await.unwrap(), 4);
    assert_eq!(store.delete_audit_events_before(1_020, 8).await.unwrap(), 0);
    assert_eq!(store.audit_events(&page(None, 100)).await.unwrap().len(), 5);
}

async fn clients_are_listed_by_pages(db: TestDatabase) {
    let store = open(&db).await;
    for i in 0..7 {
        let id = format!("client-{i}");
        store.insert_client(&full_client(&id), &audit("client.created", &id)).await.unwrap();
    }
    let first = store.clients_page(None, 3).await.unwrap();
    let second = store.clients_page(Some(&first[2].client_id), 3).await.unwrap();
    let third = store.clients_page(Some(&second[2].client_id), 3).await.unwrap();
    let ids: Vec<String> = first.iter().chain(&second).chain(&third).map(|c| c.client_id.clone()).collect();
    assert_eq!(ids, (0..7).map(|i| format!("client-{i}")).collect::<Vec<_>>());
    assert!(store.clients_page(Some("client-6"), 3).await.unwrap().is_empty());
}

async fn users_have_unique_names_and_stable_ids(db: TestDatabase) {
    let store = open(&db).await;
    let a = store.insert_user(&new_user("alice"), &user_event()).await.unwrap();
    assert_eq!(a.username, "alice");
    assert_eq!(a.name.as_deref(), Some("Nguyễn Văn A"));
    assert!(a.email_verified && !a.phone_number_verified);
    assert!(matches!(
        store.insert_user(&new_user("alice"), &user_event()).await,
        Err(StoreError::Conflict("username"))
    ));
    assert_eq!(store.user_by_username("alice").await.unwrap(), Some(a.clone()));
    assert_eq!(store.user_by_id(a.id).await.unwrap(), Some(a.clone()));
    assert_eq!(store.user_by_username("Alice").await.unwrap(), Some(a.clone()), "by its key");
    // An address verified on one account is verified on no other.
    let mut twin = new_user("alice2");
    twin.email = Some("ALICE@example.vn".into());
    assert!(matches!(store.insert_user(&twin, &user_event()).await, Err(StoreError::Conflict("email"))));
    assert_eq!(store.user_by_username("alice2").await.unwrap(), None, "undone");
    twin.email_verified = false;
    store.insert_user(&twin, &user_event()).await.unwrap();

    // Ids are never reused, even after a delete.
    assert!(store
        .end_user_sessions("alice".into(), UserChange::Delete, None, 1_700_000_100, 0, &user_event())
        .await
        .unwrap()
        .is_some());
    let b = store.insert_user(&new_user("bob"), &user_event()).await.unwrap();
    assert!(b.id > a.id);
    assert_eq!(store.user_by_id(a.id).await.unwrap(), None);

    let change = UserChange::Password { hash: "new-hash".into() };
    assert!(store
        .end_user_sessions("bob".into(), change, None, 1_800_000_000, 0, &user_event())
        .await
        .unwrap()
        .is_some());
    let b2 = store.user_by_username("bob").await.unwrap().unwrap();
    assert_eq!(
        (b2.password_hash.as_deref(), b2.updated_at, b2.created_at),
        (Some("new-hash"), 1_800_000_000, 1_700_000_000)
    );
    let change = UserChange::Password { hash: "x".into() };
    assert_eq!(store.end_user_sessions("nobody".into(), change, None, 0, 0, &user_event()).await.unwrap(), None);
    assert_eq!(store.users().await.unwrap().len(), 2);
}

async fn users_are_paged_searched_disabled_and_updated_conditionally(db: TestDatabase) {
    let store = open(&db).await;
    for name in ["An_1", "an%2", "binh", "anh"] {
        let mut u = new_user(name);
        u.attributes = [("student_id".to_string(), format!("id-{name}"))].into();
        store.insert_user(&u, &user_event()).await.unwrap();
    }
    let page = |username: Option<&str>, email: Option<&str>, after_id, limit| UserQuery {
        after_id,
        username_prefix: username.map(str::to_string),
        email_prefix: email.map(str::to_string),
        email: None,
        limit,
    };
    let names = |users: Vec<khoa_core::user::User>| users.into_iter().map(|u| u.username).collect::<Vec<_>>();
    assert_eq!(names(store.users_page(&page(Some("AN"), None, None, 10)).await.unwrap()), ["An_1", "an%2", "anh"]);
    assert_eq!(names(store.users_page(&page(Some("an%"), None, None, 10)).await.unwrap()), ["an%2"], "% is literal");
    assert_eq!(names(store.users_page(&page(Some("an_"), None, None, 10)).await.unwrap()), ["An_1"], "_ is literal");
    assert_eq!(names(store.users_page(&page(None, Some("BINH@"), None, 10)).await.unwrap()), ["binh"]);
    let exactly = |email: &str| UserQuery { email: Some(email.into()), limit: 10, ..Default::default() };
    let binh_email = store.user_by_username("binh").await.unwrap().unwrap().email.unwrap();
    assert_eq!(names(store.users_page(&exactly(&binh_email.to_uppercase())).await.unwrap()), ["binh"]);
    assert!(store.users_page(&exactly(&binh_email[..binh_email.len() - 1])).await.unwrap().is_empty(), "not a prefix");
    let first = store.users_page(&page(None, None, None, 3)).await.unwrap();
    let rest = store.users_page(&page(None, None, Some(first[2].id), 3)).await.unwrap();
    assert_eq!((first.len(), names(rest)), (3, vec!["anh".to_string()]));
    let binh = store.user_by_username("binh").await.unwrap().unwrap();
    assert_eq!(binh.attributes["student_id"], "id-binh");
    assert_eq!(binh.revision, 1);

    let mut profile = khoa_core::user::Profile::of(&binh);
    profile.name = Some("Bình".into());
    profile.attributes.insert("class".into(), "22DTHA1".into());
    let event = user_event();
    let (a, b) = tokio::join!(
        store.update_user_profile(binh.id, &profile, Some(1), 1_700_000_500, &event),
        store.update_user_profile(binh.id, &profile, Some(1), 1_700_000_500, &event),
    );
    let mut outcomes = [a.unwrap(), b.unwrap()];
    outcomes.sort_by_key(|o| format!("{o:?}"));
    assert_eq!(outcomes, [Updated::Done(2), Updated::Stale]);
    let read = store.user_by_id(binh.id).await.unwrap().unwrap();
    assert_eq!((read.name.as_deref(), read.attributes.len(), read.updated_at), (Some("Bình"), 2, 1_700_000_500));
    profile.username = "anh".into();
    assert!(matches!(
        store.update_user_profile(binh.id, &profile, None, 1, &event).await,
        Err(StoreError::Conflict("username"))
    ));
    assert_eq!(store.update_user_profile(999_999, &profile, None, 1, &event).await.unwrap(), Updated::Missing);

    store
        .end_user_sessions(UserRef::Id(binh.id), UserChange::Disable, None, 1_700_000_600, 0, &event)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(store.user_by_id(binh.id).await.unwrap().unwrap().disabled_at, Some(1_700_000_600));
    assert!(matches!(store.enable_user(binh.id, 1_700_000_700, &event).await.unwrap(), Updated::Done(_)));
    assert!(
        matches!(store.enable_user(binh.id, 1_700_000_800, &event).await.unwrap(), Updated::Done(_)),
        "already enabled"
    );
    assert_eq!(store.user_by_id(binh.id).await.unwrap().unwrap().disabled_at, None);
    let changes = AuditFilter { user_id: Some(binh.id), limit: 100, ..Default::default() };
    // Created, updated once (the stale one and the refused ones left nothing), disabled, enabled once.
    assert_eq!(store.audit_events(&changes).await.unwrap().len(), 4);
    assert_eq!(store.user_consents(binh.id).await.unwrap(), vec![]);
    assert_eq!(store.user_sessions(binh.id, 0).await.unwrap(), vec![]);
}

/// An import in many-row statements: existing usernames and repeats within it are
/// skipped, each created user is recorded once, and a second run creates nothing.
async fn imports_skip_what_exists_and_repeat_nothing(db: TestDatabase) {
    let store = open(&db).await;
    store.insert_user(&new_user("exists"), &user_event()).await.unwrap();
    let mut users: Vec<NewUser> = (0..1203).map(|i| new_user(&format!("im{i:04}"))).collect();
    users.insert(700, new_user("exists"));
    users.insert(800, new_user("im0005"));
    let event = Event::new(1_700_000_000, "user.imported", Actor::CommandLine);
    let ids = store.import_users(&users, &event).await.unwrap();
    assert_eq!(ids.len(), 1205);
    assert_eq!(ids.iter().filter(|id| id.is_some()).count(), 1203);
    assert_eq!((ids[700], ids[800]), (None, None), "the existing one and the repeat");
    let created: Vec<i64> = ids.iter().flatten().copied().collect();
    let mut sorted = created.clone();
    sorted.dedup();
    assert_eq!(sorted.len(), 1203, "distinct ids");
    let read = store.user_by_username("im1202").await.unwrap().unwrap();
    assert_eq!(Some(read.id), ids[1204]);
    assert_eq!(read.email.as_deref(), Some("im1202@example.vn"));
    let imported = AuditFilter { kind: Some("user.imported".into()), limit: 5000, ..Default::default() };
    assert_eq!(store.audit_events(&imported).await.unwrap().len(), 1203);
    let again = store.import_users(&users, &event).await.unwrap();
    assert!(again.iter().all(Option::is_none));
    assert_eq!(store.audit_events(&imported).await.unwrap().len(), 1203);
}

async fn concurrent_signups_for_one_username_admit_exactly_one(db: TestDatabase) {
    let store = open(&db).await;
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let s = store.clone();
            tokio::spawn(async move { s.insert_user(&new_user("race"), &user_event()).await })
        })
        .collect();
    let mut ok = 0;
    for t in futures::future::join_all(tasks).await {
        match t.unwrap() {
            Ok(_) => ok += 1,
            Err(StoreError::Conflict("username")) => {}
            Err(other) => panic!("unexpected error: {other}"),
        }
    }
    assert_eq!(ok, 1);
}

async fn signing_key_generations_are_unique_per_algorithm(db: TestDatabase) {
    let store = open(&db).await;
    store.insert_signing_key(&key("r1", SigningAlgorithm::RS256, 1), &user_event()).await.unwrap();
    store.insert_signing_key(&key("e1", SigningAlgorithm::ES256, 1), &user_event()).await.unwrap();
    // Generation 1 of RS256 again (another process starting at the same moment).
    assert!(matches!(
        store.insert_signing_key(&key("r1-bis", SigningAlgorithm::RS256, 1), &user_event()).await,
        Err(StoreError::Conflict(_))
    ));
    // Many processes rotating at once: exactly one wins generation 2.
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let s = store.clone();
            tokio::spawn(async move {
                s.insert_signing_key(&key(&format!("r2-{i}"), SigningAlgorithm::RS256, 2), &user_event()).await
            })
        })
        .collect();
    let wins = futures::future::join_all(tasks).await.into_iter().filter(|r| matches!(r, Ok(Ok(())))).count();
    assert_eq!(wins, 1);
    let keys = store.signing_keys().await.unwrap();
    assert_eq!(keys.len(), 3);
    assert_eq!(keys[0], key("e1", SigningAlgorithm::ES256, 1));
    assert_eq!(keys[1].private_key_sealed, vec![0, 1, 2, 255]);
}

async fn every_change_bumps_the_epoch(db: TestDatabase) {
    let store = open(&db).await;
    let mut last = store.change_epoch().await.unwrap();
    let mut bumped = |now: i64| {
        assert!(now > last, "epoch did not move: {now} <= {last}");
        last = now;
    };
    store.insert_client(&full_client("c"), &audit("client.created", "c")).await.unwrap();
    bumped(store.change_epoch().await.unwrap());
    store.delete_client("c", &audit("client.deleted", "c")).await.unwrap();
    bumped(store.change_epoch().await.unwrap());
    store.insert_user(&new_user("u"), &user_event()).await.unwrap();
    bumped(store.change_epoch().await.unwrap());
    store
        .end_user_sessions("u".into(), UserChange::Password { hash: "h".into() }, None, 1, 0, &user_event())
        .await
        .unwrap();
    bumped(store.change_epoch().await.unwrap());
    store.end_user_sessions("u".into(), UserChange::Delete, None, 1, 0, &user_event()).await.unwrap();
    bumped(store.change_epoch().await.unwrap());
    store.insert_signing_key(&key("k", SigningAlgorithm::EdDSA, 1), &user_event()).await.unwrap();
    bumped(store.change_epoch().await.unwrap());
    // A refused change leaves no trace.
    let before = store.change_epoch().await.unwrap();
    assert!(store.insert_signing_key(&key("k2", SigningAlgorithm::EdDSA, 1), &user_event()).await.is_err());
    assert_eq!(store.change_epoch().await.unwrap(), before);
}

async fn migrations_are_idempotent_and_data_survives_reopen(db: TestDatabase) {
    let store = open(&db).await;
    store.insert_user(&new_user("keep"), &user_event()).await.unwrap();
    store.migrate().await.unwrap();
    drop(store);
    let again = open(&db).await;
    assert!(again.user_by_username("keep").await.unwrap().is_some());
    again.ping().await.unwrap();
}

/// An address is verified on one account at most: a verification link for an address
/// another account has verified is refused with nothing changed (its use undone too),
/// and the "it was not me" link gives the old address back, ends every session and
/// cancels the pending links, once.
async fn an_address_is_verified_on_one_account_only(db: TestDatabase) {
    use khoa_core::account::{AccountToken, Purpose};
    let store = open(&db).await;
    store.insert_client(&full_client("portal"), &audit("client.created", "portal")).await.unwrap();
    let owner = store.insert_user(&new_user("owner"), &user_event()).await.unwrap();
    let mallory = family(&store).await; // with a session, tokens and a back-channel client
    let (_, claim) = AccountToken::issue(Purpose::EmailVerification, mallory, Some("OWNER@example.vn".into()), 1000);
    store.insert_account_token(&claim, &user_event()).await.unwrap();
    let refused = store.verify_email(&claim.token_hash, 1100, &user_event()).await;
    assert!(matches!(refused, Err(StoreError::Conflict("email"))), "{refused:?}");
    assert!(store.account_token(&claim.token_hash, Purpose::EmailVerification, 1100).await.unwrap().is_some());
    assert_ne!(store.user_by_id(mallory).await.unwrap().unwrap().email.as_deref(), Some("OWNER@example.vn"));
    // mallory's own new address, verified; then the old address reports the change.
    let old = store.user_by_id(mallory).await.unwrap().unwrap().email.unwrap();
    let (_, fresh) = AccountToken::issue(Purpose::EmailVerification, mallory, Some("new@evil.test".into()), 1000);
    let (_, pending) = AccountToken::issue(Purpose::EmailVerification, mallory, Some("other@evil.test".into()), 1001);
    let (_, reset) = AccountToken::issue(Purpose::PasswordReset, mallory, None, 1200);
    let (_, report) = AccountToken::issue(Purpose::ChangeReport, mallory, Some(old.clone()), 1000);
    for t in [&fresh, &report] {
        store.insert_account_token(t, &user_event()).await.unwrap();
    }
    store.verify_email(&fresh.token_hash, 1150, &user_event()).await.unwrap().unwrap();
    // Asked for after the change: a reset to the new address, another change.
    for t in [&reset, &pending] {
        store.insert_account_token(t, &user_event()).await.unwrap();
    }
    let event = Event::new(1300, "user.email_change_reported", Actor::Anonymous);
    let ended = store.report_email_change(&report.token_hash, 1300, 9000, &event).await.unwrap().unwrap();
    assert_eq!((ended.user_id, ended.sessions), (mallory, 1));
    let u = store.user_by_id(mallory).await.unwrap().unwrap();
    assert_eq!((u.email.as_deref(), u.email_verified), (Some(old.as_str()), true));
    assert!(!store.session_by_sid("sid").await.unwrap().unwrap().is_active(1300));
    for (t, purpose) in [(&reset, Purpose::PasswordReset), (&fresh, Purpose::EmailVerification)] {
        assert!(store.account_token(&t.token_hash, purpose, 1300).await.unwrap().is_none());
    }
    let pending_left = store.account_token(&pending.token_hash, Purpose::EmailVerification, 1300).await.unwrap();
    assert!(pending_left.is_none(), "the pending verification is cancelled");
    assert_eq!(store.report_email_change(&report.token_hash, 1301, 9000, &event).await.unwrap(), None, "once");
    let reported = AuditFilter { kind: Some("user.email_change_reported".into()), limit: 5, ..Default::default() };
    let events = store.audit_events(&reported).await.unwrap();
    assert_eq!((events.len(), events[0].detail["address_restored"].as_bool()), (1, Some(true)));
    assert!(store.user_by_id(owner.id).await.unwrap().unwrap().email_verified);
}

/// Credentials beside the password: kept per user, found by their lookup, their
/// counters moved by compare-and-swap (of ten uses at once, one wins), recovery codes
/// used once and replaced as a set, removed by their owner only, gone with the user.
async fn credentials_are_kept_counted_and_used_once(db: TestDatabase) {
    use khoa_core::authn::Method;
    use khoa_store::NewCredential;
    let store = open(&db).await;
    let alice = store.insert_user(&new_user("alice"), &user_event()).await.unwrap().id;
    let bob = store.insert_user(&new_user("bob"), &user_event()).await.unwrap().id;
    let new = |user_id, method, lookup: Option<&str>| NewCredential {
        user_id,
        method,
        name: Some("Điện thoại".into()),
        lookup: lookup.map(str::to_string),
        data: "sealed".into(),
        counter: 0,
        created_at: 1000,
    };
    let event = || Event::new(1000, "user.credential_added", Actor::CommandLine);
    let app = store.insert_credential(&new(alice, Method::Totp, None), &event()).await.unwrap();
    assert_eq!(
        (app.user_id, app.method, app.counter, app.name.as_deref()),
        (alice, Method::Totp, 0, Some("Điện thoại"))
    );
    let missing = store.insert_credential(&new(9_999, Method::Totp, None), &event()).await;
    assert!(matches!(missing, Err(StoreError::Conflict("user"))), "{missing:?}");
    // Counters: a compare-and-swap, one winner.
    assert!(store.swap_counter(app.id, 0, 100, 1100).await.unwrap());
    assert!(!store.swap_counter(app.id, 0, 101, 1101).await.unwrap(), "from a stale counter");
    let swaps: Vec<_> = (0..10)
        .map(|_| {
            let s = store.clone();
            tokio::spawn(async move { s.swap_counter(app.id, 100, 101, 1102).await.unwrap() })
        })
        .collect();
    let won = futures::future::join_all(swaps).await.into_iter().filter(|w| *w.as_ref().unwrap()).count();
    assert_eq!(won, 1);
    let stored = store.credentials(alice).await.unwrap();
    let stored: Vec<_> = stored.into_iter().filter(|c| c.method == Method::Totp).collect();
    assert_eq!((stored[0].counter, stored[0].last_used_at), (101, Some(1102)));
    // Passkeys by their credential id, unique for their kind.
    let key = store.insert_credential(&new(alice, Method::Passkey, Some("cred-1")), &event()).await.unwrap();
    let twin = store.insert_credential(&new(bob, Method::Passkey, Some("cred-1")), &event()).await;
    assert!(matches!(twin, Err(StoreError::Conflict("credential"))), "{twin:?}");
    assert_eq!(store.credential_by_lookup(Method::Passkey, "cred-1").await.unwrap().map(|c| c.id), Some(key.id));
    assert_eq!(store.credential_by_lookup(Method::Totp, "cred-1").await.unwrap(), None);
    // Recovery codes: once each, the user's own, replaced as a set.
    let codes: Vec<String> = ["h1", "h2", "h3"].iter().map(|h| h.to_string()).collect();
    store.replace_recovery_codes(alice, &codes, 1200, &event()).await.unwrap();
    let used = Event::new(1300, "user.recovery_code_used", Actor::Anonymous);
    assert!(!store.use_recovery_code(bob, "h1", 1300, &used).await.unwrap(), "another user's code");
    assert!(store.use_recovery_code(alice, "h1", 1300, &used).await.unwrap());
    assert!(!store.use_recovery_code(alice, "h1", 1301, &used).await.unwrap(), "once");
    let left = |all: Vec<khoa_store::Credential>| all.iter().filter(|c| c.method == Method::RecoveryCode).count();
    assert_eq!(left(store.credentials(alice).await.unwrap()), 2);
    store.replace_recovery_codes(alice, &["h4".to_string()], 1400, &event()).await.unwrap();
    assert!(!store.use_recovery_code(alice, "h2", 1401, &used).await.unwrap(), "voided by the new set");
    assert_eq!(left(store.credentials(alice).await.unwrap()), 1);
    let trail = AuditFilter { kind: Some("user.recovery_code_used".into()), limit: 10, ..Default::default() };
    assert_eq!(store.audit_events(&trail).await.unwrap().len(), 1, "only the use that happened");
    // A passkey's data moves with its counter, by compare-and-swap; renamed by its owner only.
    assert!(store.swap_data(key.id, key.counter, key.counter + 5, "{\"v\":2}", 1420).await.unwrap());
    assert!(!store.swap_data(key.id, key.counter, key.counter + 6, "{\"v\":3}", 1421).await.unwrap(), "stale");
    assert!(!store.rename_credential(bob, key.id, "Mallory's", &event()).await.unwrap());
    assert!(store.rename_credential(alice, key.id, "YubiKey", &event()).await.unwrap());
    let moved = store.credential_by_lookup(Method::Passkey, "cred-1").await.unwrap().unwrap();
    assert_eq!(
        (moved.data.as_str(), moved.counter, moved.name.as_deref()),
        ("{\"v\":2}", key.counter + 5, Some("YubiKey"))
    );
    // Removed by the owner only; gone with the user.
    assert!(!store.delete_credential(bob, key.id, &event()).await.unwrap());
    assert!(store.delete_credential(alice, key.id, &event()).await.unwrap());
    assert_eq!(store.credential_by_lookup(Method::Passkey, "cred-1").await.unwrap(), None);
    // An administrator's reset removes all of one person's, and says how many.
    let second_factors =
        |all: Vec<khoa_store::Credential>| all.iter().filter(|c| c.method != Method::Password).count() as u64;
    let bobs = second_factors(store.credentials(bob).await.unwrap());
    let before = second_factors(store.credentials(alice).await.unwrap());
    assert!(before > 0);
    let reset = Event::new(1450, "user.mfa_reset", khoa_core::audit::Actor::CommandLine);
    assert_eq!(store.reset_credentials(alice, &reset).await.unwrap(), before);
    assert_eq!(second_factors(store.credentials(alice).await.unwrap()), 0);
    assert_eq!(second_factors(store.credentials(bob).await.unwrap()), bobs, "nobody else's");
    let trail = AuditFilter { kind: Some("user.mfa_reset".into()), limit: 10, ..Default::default() };
    let events = store.audit_events(&trail).await.unwrap();
    assert_eq!((events[0].user_id, events[0].detail["removed"].as_u64()), (Some(alice), Some(before)));
    store.end_user_sessions(UserRef::Id(alice), UserChange::Delete, None, 1500, 0, &user_event()).await.unwrap();
    assert!(store.credentials(alice).await.unwrap().is_empty());
}

/// Runs `sql` on the test database directly, outside the store (what an older
/// version of khoa left behind).
async fn raw(db: &TestDatabase, sql: &str) {
    match db.backend {
        khoa_store::Backend::Sqlite => {
            let conn = rusqlite::Connection::open(db.url.trim_start_matches("sqlite://")).unwrap();
            conn.execute_batch(sql).unwrap();
        }
        khoa_store::Backend::Postgres => {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
            sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
        }
    }
}

/// Where the schema stands is read without changing it (`khoa migrate --check`), and a
/// schema newer than this version knows is refused before anything is applied.
async fn pending_migrations_are_reported_and_a_newer_schema_refused(db: TestDatabase) {
    let store = khoa_store::connect(&db.url).await.unwrap();
    let fresh = store.schema().await.unwrap();
    assert_eq!((fresh.applied, fresh.newer.len()), (0, 0));
    assert_eq!(fresh.pending.first().map(|p| p.0), Some(1));
    assert_eq!(store.schema().await.unwrap(), fresh, "reading changes nothing");
    store.migrate().await.unwrap();
    let current = store.schema().await.unwrap();
    assert!(current.pending.is_empty() && current.newer.is_empty() && current.applied == fresh.pending.len());
    let future = match db.backend {
        khoa_store::Backend::Sqlite => "X'00'",
        khoa_store::Backend::Postgres => "'\\x00'::bytea",
    };
    raw(
        &db,
        &format!(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (999, 'from a newer khoa', TRUE, {future}, 0)"
        ),
    )
    .await;
    assert_eq!(store.schema().await.unwrap().newer, [999]);
    let refused = store.migrate().await.unwrap_err().to_string();
    assert!(refused.contains("migration 999") && refused.contains("newer version"), "{refused}");
}

/// Migration 0016: a password an older version kept in the users row becomes the
/// person's password credential, as it is (no reset); one password a person.
async fn passwords_move_into_credentials_without_a_reset(db: TestDatabase) {
    let store = open(&db).await;
    let alice = store.insert_user(&new_user("alice"), &user_event()).await.unwrap();
    let (event, no_password) = (user_event(), NewUser { password_hash: None, email: None, ..new_user("nopass") });
    let nopass = store.insert_user(&no_password, &event).await.unwrap();
    assert_eq!(nopass.password_hash, None);
    // As a version before 0016 left the database.
    raw(
        &db,
        "DROP INDEX credentials_one_password; DELETE FROM credentials; \
         DELETE FROM _sqlx_migrations WHERE version = 16; \
         UPDATE users SET password_hash = '$argon2id$old' WHERE username = 'alice'",
    )
    .await;
    assert_eq!(store.user_by_id(alice.id).await.unwrap().unwrap().password_hash, None, "not read from the row");
    store.migrate().await.unwrap();
    let moved = store.user_by_username("alice").await.unwrap().unwrap();
    assert_eq!(moved.password_hash.as_deref(), Some("$argon2id$old"));
    assert_eq!(store.user_by_id(nopass.id).await.unwrap().unwrap().password_hash, None);
    // The users row keeps no hash any more; the credential is the one place.
    assert!(store.upgrade_password_hash(alice.id, "$argon2id$old", "$argon2id$new", 5, &event).await.unwrap());
    assert_eq!(store.user_by_id(alice.id).await.unwrap().unwrap().password_hash.as_deref(), Some("$argon2id$new"));
    let second = khoa_store::NewCredential {
        user_id: alice.id,
        method: khoa_core::authn::Method::Password,
        name: None,
        lookup: None,
        data: "$argon2id$second".into(),
        counter: 0,
        created_at: 6,
    };
    assert!(store.insert_credential(&second, &user_event()).await.is_err(), "one password a person");
    // An administrator's reset of second factors leaves the password.
    store.reset_credentials(alice.id, &user_event()).await.unwrap();
    assert!(store.user_by_id(alice.id).await.unwrap().unwrap().password_hash.is_some());
}

/// Usernames are unique by key: `Alice`, `ALICE` or a full-width `ａｌｉｃｅ` cannot be
/// created, imported or renamed to beside `alice`, and sign in as alice. Accounts an
/// older version made that collide keep working as typed and are reported.
async fn usernames_are_unique_by_key_and_old_collisions_are_reported(db: TestDatabase) {
    let store = open(&db).await;
    let alice = store.insert_user(&new_user("alice"), &user_event()).await.unwrap();
    for taken in ["Alice", "ALICE", "ａｌｉｃｅ"] {
        let mut user = new_user(taken);
        user.email = None;
        let refused = store.insert_user(&user, &user_event()).await;
        assert!(matches!(refused, Err(StoreError::Conflict("username"))), "{taken}: {refused:?}");
        assert_eq!(store.user_by_username(taken).await.unwrap().map(|u| u.id), Some(alice.id), "{taken} is alice");
    }
    let imported = store.import_users(&[new_user("aLiCe"), new_user("bob")], &user_event()).await.unwrap();
    assert!(imported[0].is_none() && imported[1].is_some(), "{imported:?}");
    let bob = store.user_by_username("bob").await.unwrap().unwrap();
    let renamed = khoa_core::user::Profile { username: "ALICE".into(), ..khoa_core::user::Profile::of(&bob) };
    assert!(matches!(
        store.update_user_profile(bob.id, &renamed, None, 1, &user_event()).await,
        Err(StoreError::Conflict("username"))
    ));
    assert!(store.username_collisions().await.unwrap().is_empty());

    // Made by a version before the keys: `Alice` beside `alice`.
    raw(&db, "UPDATE users SET username_key = NULL").await;
    let mut twin = new_user("Alice");
    twin.email = None;
    let twin = store.insert_user(&twin, &user_event()).await.unwrap();
    raw(&db, "UPDATE users SET username_key = NULL").await;
    store.migrate().await.unwrap();
    assert_eq!(store.username_collisions().await.unwrap(), [("Alice".to_string(), "alice".to_string())]);
    // Each still signs in as typed; the key belongs to the older account.
    assert_eq!(store.user_by_username("Alice").await.unwrap().map(|u| u.id), Some(twin.id));
    assert_eq!(store.user_by_username("alice").await.unwrap().map(|u| u.id), Some(alice.id));
    assert_eq!(store.user_by_username("ALICE").await.unwrap().map(|u| u.id), Some(alice.id));
    assert_eq!(store.user_by_username("BOB").await.unwrap().map(|u| u.id), Some(bob.id), "bob has his key again");
    // Renamed by an operator, the collision is resolved and the account keyed.
    let renamed = khoa_core::user::Profile { username: "alice2".into(), ..khoa_core::user::Profile::of(&twin) };
    store.update_user_profile(twin.id, &renamed, None, 2, &user_event()).await.unwrap();
    assert!(store.username_collisions().await.unwrap().is_empty());
    assert_eq!(store.user_by_username("ALICE2").await.unwrap().map(|u| u.id), Some(twin.id));
}

fn session(sid: &str, user_id: i64) -> Session {
    Session {
        id_hash: format!("hash-{sid}"),
        sid: sid.into(),
        user_id,
        auth_time: 1000,
        amr: vec!["pwd".into()],
        created_at: 1000,
        expires_at: 2000,
        ended_at: None,
        device: None,
        address: None,
        last_used_at: 0,
    }
}

fn code(hash: &str, client_id: &str, sid: &str, user_id: i64) -> AuthorizationCode {
    AuthorizationCode {
        code_hash: hash.into(),
        client_id: client_id.into(),
        user_id,
        sid: sid.into(),
        redirect_uri: "https://app.example/cb".into(),
        redirect_uri_sent: true,
        scope: "openid profile".into(),
        nonce: Some("n".into()),
        code_challenge: Some("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into()),
        auth_time: 1000,
        amr: vec!["pwd".into()],
        created_at: 1100,
        expires_at: 1160,
    }
}

/// A code check that passes.
fn pass() -> CodeCheck {
    Box::new(|_| Ok(()))
}

fn token(jti: &str) -> NewAccessToken {
    NewAccessToken { jti: jti.into(), issued_at: 1110, expires_at: 4710 }
}

/// The outbox page by page (newest first, by creation time then id), by status, and a
/// retry that makes a notice due again, once recorded.
async fn deliveries_are_paged_and_retried(db: TestDatabase) {
    let store = open(&db).await;
    let user = store.insert_user(&new_user("sv"), &user_event()).await.unwrap();
    for (i, at) in [(0, 1000), (1, 1000), (2, 1001), (3, 1002), (4, 1002)] {
        let sid = format!("sid-{i}");
        store.insert_session(&session(&sid, user.id)).await.unwrap();
        let notice = khoa_store::Notice {
            id: format!("n{i}"),
            client_id: "portal".into(),
            uri: "https://app.example/bc".into(),
            sub: user.id.to_string(),
            sid: sid.clone(),
        };
        assert!(store.logout_session(&sid, at, &[notice], 9000, &user_event()).await.unwrap());
    }
    let mut seen = vec![];
    let mut before = None;
    loop {
        let page = store.deliveries_page(None, before.clone(), 2).await.unwrap();
        if page.is_empty() {
            break;
        }
        before = page.last().map(|d| (d.created_at, d.notice.id.clone()));
        seen.extend(page.into_iter().map(|d| d.notice.id));
    }
    assert_eq!(seen, ["n3", "n4", "n2", "n0", "n1"]);
    let claimed = store.claim_deliveries("w", 1002, 1030, 10).await.unwrap();
    assert_eq!(claimed.len(), 5);
    let failed = khoa_store::AttemptRecord::Failed { status: Some(400), error: "refused".into() };
    assert!(store.record_attempt("n2", "w", 1003, &failed).await.unwrap());
    let delivered = khoa_store::AttemptRecord::Delivered { status: 200 };
    assert!(store.record_attempt("n0", "w", 1003, &delivered).await.unwrap());
    let failed_ones = store.deliveries_page(Some("failed"), None, 10).await.unwrap();
    assert_eq!(failed_ones.iter().map(|d| d.notice.id.as_str()).collect::<Vec<_>>(), ["n2"]);
    let event = Event::new(1004, "backchannel.retried", Actor::CommandLine);
    assert_eq!(store.retry_delivery("n2", 1004, &event).await.unwrap(), Some(true));
    assert_eq!(store.retry_delivery("n0", 1004, &event).await.unwrap(), Some(false), "delivered");
    assert_eq!(store.retry_delivery("nope", 1004, &event).await.unwrap(), None);
    let again = store.claim_deliveries("w2", 1004, 1034, 10).await.unwrap();
    assert_eq!(again.iter().map(|d| (d.notice.id.as_str(), d.attempts)).collect::<Vec<_>>(), [("n2", 0)]);
    let retried = AuditFilter { kind: Some("backchannel.retried".into()), limit: 10, ..Default::default() };
    assert_eq!(store.audit_events(&retried).await.unwrap().len(), 1);
}

async fn sessions_interactions_and_consents(db: TestDatabase) {
    let store = open(&db).await;
    let user = store.insert_user(&new_user("sv"), &user_event()).await.unwrap();
    store.insert_client(&full_client("portal"), &audit("client.created", "portal")).await.unwrap();

    let s = Session {
        device: Some("Firefox · Linux".into()),
        address: Some("192.0.2.7".into()),
        ..session("sid-1", user.id)
    };
    store.insert_session(&s).await.unwrap();
    assert_eq!(store.session("hash-sid-1").await.unwrap(), Some(s.clone()));
    assert_eq!(store.session_by_sid("sid-1").await.unwrap(), Some(s.clone()));
    // Its last use moves forward only.
    store.touch_session("sid-1", 1300).await.unwrap();
    store.touch_session("sid-1", 1200).await.unwrap();
    let touched = store.session_by_sid("sid-1").await.unwrap().unwrap();
    assert_eq!(touched.last_used_at, 1300);
    // A step-up: a new cookie, the stronger amr and auth_time; the same sid.
    let stronger = vec!["mfa".to_string(), "otp".into(), "pwd".into()];
    assert!(store.step_up_session("hash-sid-1", "hash-sid-1b", &stronger, 1350).await.unwrap());
    assert_eq!(store.session("hash-sid-1").await.unwrap(), None, "the old cookie is gone");
    let up = store.session("hash-sid-1b").await.unwrap().unwrap();
    assert_eq!((up.sid.as_str(), up.amr.clone(), up.auth_time), ("sid-1", stronger.clone(), 1350));
    assert!(!store.step_up_session("hash-sid-1", "hash-x", &stronger, 1360).await.unwrap(), "once");
    assert!(store.step_up_session("hash-sid-1b", "hash-sid-1", &stronger, 1350).await.unwrap());
    assert!(store.logout_session("sid-1", 1500, &[], 9000, &user_event()).await.unwrap());
    assert!(!store.logout_session("sid-1", 1600, &[], 9000, &user_event()).await.unwrap(), "ends once");
    assert_eq!(store.session("hash-sid-1").await.unwrap().unwrap().ended_at, Some(1500));
    assert!(!store.step_up_session("hash-sid-1", "hash-y", &[], 1510).await.unwrap(), "an ended session is not raised");

    let i = Interaction {
        id_hash: "ia".into(),
        csrf_token: "csrf".into(),
        request: "{}".into(),
        sid: None,
        created_at: 1000,
        expires_at: 1600,
    };
    store.insert_interaction(&i).await.unwrap();
    assert_eq!(store.interaction("ia", 1599).await.unwrap(), Some(i.clone()));
    assert_eq!(store.interaction("ia", 1600).await.unwrap(), None, "expired");
    assert!(store.set_interaction_session("ia", "sid-1").await.unwrap());
    assert_eq!(store.interaction("ia", 1000).await.unwrap().unwrap().sid.as_deref(), Some("sid-1"));
    assert!(store.delete_interaction("ia").await.unwrap());
    assert!(!store.delete_interaction("ia").await.unwrap(), "completes once");

    assert_eq!(store.consent(user.id, "portal").await.unwrap(), None);
    store.grant_consent(user.id, "portal", "openid", 1).await.unwrap();
    store.grant_consent(user.id, "portal", "email openid", 2).await.unwrap();
    assert_eq!(store.consent(user.id, "portal").await.unwrap().as_deref(), Some("email openid"));

    // Deleting the user removes their sessions and consents.
    store.insert_session(&session("sid-2", user.id)).await.unwrap();
    assert!(store
        .end_user_sessions("sv".into(), UserChange::Delete, None, 1700, 9000, &user_event())
        .await
        .unwrap()
        .is_some());
    assert_eq!(store.session_by_sid("sid-2").await.unwrap(), None);
    assert_eq!(store.consent(user.id, "portal").await.unwrap(), None);
}

async fn codes_are_single_use_and_replay_revokes(db: TestDatabase) {
    let store = open(&db).await;
    let user = store.insert_user(&new_user("sv"), &user_event()).await.unwrap();
    store.insert_session(&session("sid", user.id)).await.unwrap();
    store.insert_code(&code("c1", "portal", "sid", user.id)).await.unwrap();
    store.insert_code(&code("c2", "mobile", "sid", user.id)).await.unwrap();
    assert_eq!(store.session_clients("sid").await.unwrap(), ["mobile", "portal"]);

    assert_eq!(
        store.redeem_code("c1", "mobile", 1120, pass(), &token("t0"), Box::new(|_| None)).await.unwrap(),
        Redemption::OtherClient
    );
    let Redemption::Redeemed(redeemed) =
        store.redeem_code("c1", "portal", 1120, pass(), &token("t1"), Box::new(|_| None)).await.unwrap()
    else {
        panic!("not redeemed");
    };
    assert_eq!(*redeemed, code("c1", "portal", "sid", user.id));
    let t1 = store.access_token("t1").await.unwrap().unwrap();
    assert_eq!(
        (t1.grant_id.as_str(), t1.user_id, t1.sid.as_deref(), t1.revoked_at),
        ("c1", Some(user.id), Some("sid"), None)
    );
    assert_eq!(store.access_token("t0").await.unwrap(), None);

    // Replay: refused, and the token issued from the code is revoked.
    assert_eq!(
        store.redeem_code("c1", "portal", 1130, pass(), &token("t2"), Box::new(|_| None)).await.unwrap(),
        Redemption::Replayed { revoked: 1 }
    );
    assert_eq!(store.access_token("t1").await.unwrap().unwrap().revoked_at, Some(1130));
    assert_eq!(store.access_token("t2").await.unwrap(), None);
    assert_eq!(
        store.redeem_code("nope", "portal", 1130, pass(), &token("t3"), Box::new(|_| None)).await.unwrap(),
        Redemption::Unknown
    );
    // c1 was redeemed with this challenge: another code of portal with it is a reuse.
    let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    assert!(store.code_challenge_reused("portal", challenge, "c9").await.unwrap());
    assert!(!store.code_challenge_reused("portal", challenge, "c1").await.unwrap(), "not its own");
    assert!(!store.code_challenge_reused("mobile", challenge, "c9").await.unwrap(), "c2 of mobile is not redeemed");
    assert_eq!(store.revoke_family("c1", 1200).await.unwrap(), 0, "already revoked");
}

async fn a_code_outlives_no_logout(db: TestDatabase) {
    let store = open(&db).await;
    let user = store.insert_user(&new_user("sv"), &user_event()).await.unwrap();
    store.insert_session(&session("sid", user.id)).await.unwrap();
    store.insert_code(&code("c1", "portal", "sid", user.id)).await.unwrap();
    assert!(store.logout_session("sid", 1110, &[], 9000, &user_event()).await.unwrap());
    let built = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let refresh_for: RefreshFor = {
        let (built, user_id) = (built.clone(), user.id);
        Box::new(move |_: &khoa_core::code::AuthorizationCode| {
            built.store(true, std::sync::atomic::Ordering::SeqCst);
            Some(refresh("r-late", "c1", user_id, 1120))
        })
    };
    assert_eq!(
        store.redeem_code("c1", "portal", 1120, pass(), &token("t1"), refresh_for).await.unwrap(),
        Redemption::SessionEnded
    );
    assert!(!built.load(std::sync::atomic::Ordering::SeqCst), "no refresh token was built");
    assert_eq!(store.access_token("t1").await.unwrap(), None, "no access token recorded");
    assert_eq!(store.refresh_token("r-late").await.unwrap(), None, "no refresh token recorded");
    // Another client's attempt is still told apart, and nothing was consumed.
    assert_eq!(
        store.redeem_code("c1", "mobile", 1121, pass(), &token("t2"), Box::new(|_| None)).await.unwrap(),
        Redemption::OtherClient
    );
    assert_eq!(
        store.redeem_code("c1", "portal", 1122, pass(), &token("t3"), Box::new(|_| None)).await.unwrap(),
        Redemption::SessionEnded,
        "still not consumed (a consumed code would count as a replay)"
    );
}

/// A mailed link does its work once: of twenty concurrent resets with one link exactly
/// one changes the password (ending every session and token in the same transaction),
/// and the user's other links die with it; an expired link does nothing; a
/// verification link makes its address the user's, verified.
async fn account_links_are_single_use(db: TestDatabase) {
    use khoa_core::account::{AccountToken, Purpose};
    let store = open(&db).await;
    store.insert_client(&full_client("portal"), &audit("client.created", "portal")).await.unwrap();
    let user = family(&store).await;
    let (_, link) = AccountToken::issue(Purpose::PasswordReset, user, None, 1000);
    let (_, sibling) = AccountToken::issue(Purpose::PasswordReset, user, None, 1001);
    let (_, expired) = AccountToken::issue(Purpose::PasswordReset, user, None, 1000 - 1800);
    for t in [&link, &sibling, &expired] {
        store.insert_account_token(t, &user_event()).await.unwrap();
    }
    assert_eq!(store.account_token(&link.token_hash, Purpose::PasswordReset, 1500).await.unwrap(), Some(link.clone()));
    assert_eq!(store.account_token(&link.token_hash, Purpose::EmailVerification, 1500).await.unwrap(), None);
    assert_eq!(store.account_token(&expired.token_hash, Purpose::PasswordReset, 1500).await.unwrap(), None);
    let reset = |hash: String, password: String| {
        let s = store.clone();
        tokio::spawn(async move {
            let event = Event::new(1500, "user.password_reset", Actor::Anonymous);
            s.reset_password(&hash, &password, 1500, 9000, &event).await.unwrap()
        })
    };
    let tasks: Vec<_> = (0..20).map(|i| reset(link.token_hash.clone(), format!("$argon2id$new{i}"))).collect();
    let mut done = vec![];
    for t in tasks {
        done.extend(t.await.unwrap());
    }
    assert_eq!(done, [EndedSessions { user_id: user, sessions: 1, tokens: 2, notifications: 1 }]);
    let hash = store.user_by_id(user).await.unwrap().unwrap().password_hash.unwrap_or_default();
    assert!(hash.starts_with("$argon2id$new"), "{hash}");
    assert!(!store.session_by_sid("sid").await.unwrap().unwrap().is_active(1500));
    assert_eq!(store.access_token("a0").await.unwrap().unwrap().revoked_at, Some(1500));
    // The other link is used up too; the expired one does nothing.
    for t in [&sibling, &expired] {
        assert_eq!(reset(t.token_hash.clone(), "$argon2id$late".into()).await.unwrap(), None);
    }
    assert_eq!(store.user_by_id(user).await.unwrap().unwrap().password_hash, Some(hash));
    let resets = AuditFilter { kind: Some("user.password_reset".into()), limit: 10, ..Default::default() };
    let events = store.audit_events(&resets).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!((events[0].user_id, events[0].detail["sessions_ended"].as_i64()), (Some(user), Some(1)));
    // Email verification: the address becomes the user's, verified, once.
    let (_, verify) = AccountToken::issue(Purpose::EmailVerification, user, Some("moi@example.vn".into()), 1000);
    store.insert_account_token(&verify, &user_event()).await.unwrap();
    let event = Event::new(1600, "user.email_verified", Actor::User(user));
    assert_eq!(
        store.verify_email(&verify.token_hash, 1600, &event).await.unwrap(),
        Some((user, "moi@example.vn".to_string()))
    );
    let u = store.user_by_id(user).await.unwrap().unwrap();
    assert_eq!((u.email.as_deref(), u.email_verified), (Some("moi@example.vn"), true));
    assert_eq!(store.verify_email(&verify.token_hash, 1601, &event).await.unwrap(), None);
    assert_eq!(store.verify_email(&link.token_hash, 1601, &event).await.unwrap(), None, "not a verification link");
    // Expired links are cleaned up.
    assert_eq!(store.delete_expired(Expiring::AccountTokens, 1000 + 1800, 100).await.unwrap(), 1);
}

/// A reset link stops working once the password it would replace is changed (on the
/// account page, by `khoa user set-password`, by the admin API), or once the address it
/// was mailed to is replaced (by a verified new address, or an operator's edit).
async fn reset_links_end_with_the_password_or_the_address_they_were_for(db: TestDatabase) {
    use khoa_core::account::{AccountToken, Purpose};
    use khoa_core::user::Profile;
    let store = open(&db).await;
    let user = store.insert_user(&new_user("linked"), &user_event()).await.unwrap().id;
    let link = |at: i64| AccountToken::issue(Purpose::PasswordReset, user, None, at).1;
    let usable = |t: AccountToken| {
        let s = store.clone();
        async move { s.account_token(&t.token_hash, Purpose::PasswordReset, 1500).await.unwrap().is_some() }
    };
    // 1. A password change; the link asked for after it works.
    let before = link(1000);
    store.insert_account_token(&before, &user_event()).await.unwrap();
    let change = UserChange::Password { hash: "$argon2id$changed".into() };
    store.end_user_sessions(UserRef::Id(user), change, Some("kept"), 1100, 9000, &user_event()).await.unwrap();
    assert!(!usable(before.clone()).await, "after a password change");
    let after = link(1200);
    store.insert_account_token(&after, &user_event()).await.unwrap();
    assert!(usable(after.clone()).await, "a link asked for later works");
    // 2. A new address, verified.
    let (_, verify) = AccountToken::issue(Purpose::EmailVerification, user, Some("new@example.vn".into()), 1200);
    store.insert_account_token(&verify, &user_event()).await.unwrap();
    store.verify_email(&verify.token_hash, 1300, &user_event()).await.unwrap().unwrap();
    assert!(!usable(after).await, "after the address is replaced");
    // 3. An operator's edit of the address; an edit of anything else keeps the link.
    let current = Profile::of(&store.user_by_id(user).await.unwrap().unwrap());
    let kept = link(1300);
    store.insert_account_token(&kept, &user_event()).await.unwrap();
    let renamed = Profile { name: Some("Tên mới".into()), ..current.clone() };
    store.update_user_profile(user, &renamed, None, 1350, &user_event()).await.unwrap();
    assert!(usable(kept.clone()).await, "a name change keeps it");
    let same_in_capitals = Profile { email: Some("NEW@example.vn".into()), ..renamed.clone() };
    store.update_user_profile(user, &same_in_capitals, None, 1360, &user_event()).await.unwrap();
    assert!(usable(kept.clone()).await, "the same address in capitals keeps it");
    let moved = Profile { email: Some("other@example.vn".into()), ..renamed };
    store.update_user_profile(user, &moved, None, 1400, &user_event()).await.unwrap();
    assert!(!usable(kept).await, "after an operator's change of address");
}

/// The account page's changes: a new password ends every other session (and its
/// tokens) but the one it was changed in; revoking an application's access forgets
/// the consent and revokes that client's tokens only.
async fn a_password_change_keeps_its_session_and_access_is_revoked_per_client(db: TestDatabase) {
    let store = open(&db).await;
    store.insert_client(&full_client("portal"), &audit("client.created", "portal")).await.unwrap();
    store.insert_client(&full_client("lms"), &audit("client.created", "lms")).await.unwrap();
    let user = family(&store).await;
    store.insert_session(&session("here", user)).await.unwrap();
    store.insert_code(&code("c2", "lms", "here", user)).await.unwrap();
    let redeemed = store.redeem_code("c2", "lms", 1120, pass(), &token("a-here"), Box::new(|_| None)).await.unwrap();
    assert!(matches!(redeemed, Redemption::Redeemed(_)));
    store.grant_consent(user, "portal", "openid", 1100).await.unwrap();
    store.grant_consent(user, "lms", "openid", 1100).await.unwrap();
    let event = Event::new(1500, "user.password_changed", Actor::User(user));
    let change = UserChange::Password { hash: "$argon2id$mine".into() };
    let ended =
        store.end_user_sessions(UserRef::Id(user), change, Some("here"), 1500, 9000, &event).await.unwrap().unwrap();
    assert_eq!((ended.sessions, ended.tokens, ended.notifications), (1, 2, 1));
    assert!(store.session_by_sid("here").await.unwrap().unwrap().is_active(1500), "this session stays");
    assert!(!store.session_by_sid("sid").await.unwrap().unwrap().is_active(1500));
    assert_eq!(store.access_token("a-here").await.unwrap().unwrap().revoked_at, None);
    assert_eq!(store.access_token("a0").await.unwrap().unwrap().revoked_at, Some(1500));
    assert_eq!(store.user_by_id(user).await.unwrap().unwrap().password_hash.as_deref(), Some("$argon2id$mine"));
    // Revoking lms's access: its consent and token go, portal's consent stays.
    let event = Event::new(1600, "consent.revoked", Actor::User(user)).client("lms");
    assert_eq!(store.revoke_consent(user, "lms", 1600, &event).await.unwrap(), Some(1));
    assert_eq!(store.access_token("a-here").await.unwrap().unwrap().revoked_at, Some(1600));
    let left: Vec<String> = store.user_consents(user).await.unwrap().into_iter().map(|c| c.client_id).collect();
    assert_eq!(left, ["portal"]);
    assert_eq!(store.revoke_consent(user, "lms", 1601, &event).await.unwrap(), None, "nothing left to revoke");
}

async fn parallel_redemptions_admit_exactly_one(db: TestDatabase) {
    let store = open(&db).await;
    let user = store.insert_user(&new_user("sv"), &user_event()).await.unwrap();
    store.insert_session(&session("sid", user.id)).await.unwrap();
    store.insert_code(&code("race", "portal", "sid", user.id)).await.unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let s = store.clone();
            tokio::spawn(async move {
                s.redeem_code("race", "portal", 1120, pass(), &token(&format!("t{i}")), Box::new(|_| None)).await
            })
        })
        .collect();
    let results: Vec<Redemption> =
        futures::future::join_all(tasks).await.into_iter().map(|r| r.unwrap().unwrap()).collect();
    let winners = results.iter().filter(|r| matches!(r, Redemption::Redeemed(_))).count();
    assert_eq!(winners, 1, "{results:?}");
    assert!(results.iter().all(|r| matches!(r, Redemption::Redeemed(_) | Redemption::Replayed { .. })));
}

async fn client_auth_failures_are_counted(db: TestDatabase) {
    let store = open(&db).await;
    let policy = ThrottlePolicy { free_failures: 2, base_delay: 10, max_delay: 100, window: 1000 };
    assert_eq!(store.record_login_failure("client:a", 100, &policy).await.unwrap(), 100);
    assert_eq!(store.record_login_failure("client:a", 101, &policy).await.unwrap(), 111);
    assert_eq!(store.record_login_failure("client:a", 102, &policy).await.unwrap(), 122);
    // Failures older than the window are forgotten.
    assert_eq!(store.record_login_failure("client:a", 2000, &policy).await.unwrap(), 2000);
}

fn throttle_key(key: &str, free_failures: i64, on_success: OnSuccess) -> ThrottleKey {
    let policy = ThrottlePolicy { free_failures, base_delay: 10, max_delay: 100, window: 1000 };
    ThrottleKey { key: key.into(), policy, on_success }
}

/// How many more attempts `key` admits at `now` with `free_failures` before blocking:
/// tells how many were counted under it.
async fn admitted_until_blocked(store: &Arc<dyn Store>, key: &str, free_failures: i64, now: i64) -> i64 {
    let keys = [throttle_key(key, free_failures, OnSuccess::Refund)];
    let mut n = 0;
    while store.reserve_login_attempt(&keys, now).await.unwrap() == Reservation::Admitted {
        n += 1;
        assert!(n <= free_failures, "never more than the free failures");
    }
    n
}

async fn login_attempts_are_reserved_atomically(db: TestDatabase) {
    let store = open(&db).await;
    let keys = vec![throttle_key("pair", 3, OnSuccess::Forget), throttle_key("account", 100, OnSuccess::Refund)];
    // 60 attempts at once: exactly the 3 free ones are admitted, the rest counted nowhere.
    let tasks: Vec<_> = (0..60)
        .map(|_| {
            let (s, keys) = (store.clone(), keys.clone());
            tokio::spawn(async move { s.reserve_login_attempt(&keys, 100).await.unwrap() })
        })
        .collect();
    let results: Vec<Reservation> = futures::future::join_all(tasks).await.into_iter().map(|r| r.unwrap()).collect();
    assert_eq!(results.iter().filter(|r| **r == Reservation::Admitted).count(), 3, "{results:?}");
    assert!(results.iter().all(|r| matches!(r, Reservation::Admitted | Reservation::Blocked { until: 110 })));
    assert_eq!(admitted_until_blocked(&store, "account", 5, 100).await, 2, "3 of 5 counted: only the admitted");
    // Blocked until the doubling wait has passed, then one more attempt each period.
    assert_eq!(store.reserve_login_attempt(&keys, 109).await.unwrap(), Reservation::Blocked { until: 110 });
    assert_eq!(store.reserve_login_attempt(&keys, 110).await.unwrap(), Reservation::Admitted);
    assert_eq!(store.reserve_login_attempt(&keys, 111).await.unwrap(), Reservation::Blocked { until: 130 });
    // Attempts older than the window are forgotten.
    assert_eq!(store.reserve_login_attempt(&keys, 2000).await.unwrap(), Reservation::Admitted);
}

async fn a_refused_reservation_counts_under_no_key(db: TestDatabase) {
    let store = open(&db).await;
    let keys = [throttle_key("first", 10, OnSuccess::Refund), throttle_key("second", 1, OnSuccess::Refund)];
    assert_eq!(store.reserve_login_attempt(&keys, 100).await.unwrap(), Reservation::Admitted);
    // "second" refuses after "first" was counted: "first" is undone.
    assert_eq!(store.reserve_login_attempt(&keys, 100).await.unwrap(), Reservation::Blocked { until: 110 });
    assert_eq!(admitted_until_blocked(&store, "first", 3, 100).await, 2, "first holds 1 attempt, not 2");
}

async fn a_successful_login_settles_its_reservation(db: TestDatabase) {
    let store = open(&db).await;
    let keys = [throttle_key("pair", 2, OnSuccess::Forget), throttle_key("address", 2, OnSuccess::Refund)];
    for _ in 0..2 {
        assert_eq!(store.reserve_login_attempt(&keys, 100).await.unwrap(), Reservation::Admitted);
    }
    assert!(matches!(store.reserve_login_attempt(&keys, 100).await.unwrap(), Reservation::Blocked { .. }));
    // The second attempt was the right password: "pair" forgets, "address" gets it back
    // (and the block that only it caused is lifted).
    store.settle_login_success(&keys, 100).await.unwrap();
    assert_eq!(admitted_until_blocked(&store, "pair", 2, 100).await, 2, "pair forgot both");
    assert_eq!(admitted_until_blocked(&store, "address", 2, 100).await, 1, "address holds the other failure");
}

async fn ending_a_users_sessions_revokes_and_notifies_in_one_step(db: TestDatabase) {
    let store = open(&db).await;
    store.insert_client(&full_client("portal"), &audit("client.created", "portal")).await.unwrap();
    let user = family(&store).await;
    store.insert_user(&new_user("other"), &user_event()).await.unwrap();
    // The active session, with the client it signed in to.
    let active = store.user_sessions(user, 1500).await.unwrap();
    assert_eq!(
        active.iter().map(|a| (a.session.sid.as_str(), a.clients.clone())).collect::<Vec<_>>(),
        [("sid", vec!["portal".to_string()])]
    );
    let epoch = store.change_epoch().await.unwrap();
    let change = UserChange::Password { hash: "$argon2id$new".into() };
    let ended = store.end_user_sessions("sv".into(), change, None, 1500, 9000, &user_event()).await.unwrap().unwrap();
    assert_eq!(ended, EndedSessions { user_id: user, sessions: 1, tokens: 2, notifications: 1 });
    assert!(!store.session_by_sid("sid").await.unwrap().unwrap().is_active(1500));
    assert_eq!(store.user_sessions(user, 1500).await.unwrap(), vec![], "ended sessions are not listed");
    assert_eq!(store.access_token("a0").await.unwrap().unwrap().revoked_at, Some(1500));
    assert_eq!(store.refresh_token("r0").await.unwrap().unwrap().revoked_at, Some(1500), "offline ones too");
    assert_eq!(store.user_by_username("sv").await.unwrap().unwrap().password_hash.as_deref(), Some("$argon2id$new"));
    assert!(store.change_epoch().await.unwrap() > epoch, "caches learn the new password");
    let queued = store.deliveries(10).await.unwrap();
    assert_eq!(queued.len(), 1);
    assert_eq!((queued[0].notice.sid.as_str(), queued[0].notice.client_id.as_str()), ("sid", "portal"));
    assert_eq!(
        (queued[0].notice.sub.clone(), queued[0].notice.uri.as_str()),
        (user.to_string(), "https://app.example/bc")
    );
    // Nothing is left to end; an unknown user changes nothing.
    let again =
        store.end_user_sessions("sv".into(), UserChange::None, None, 1600, 9000, &user_event()).await.unwrap().unwrap();
    assert_eq!((again.sessions, again.tokens, again.notifications), (0, 0, 0));
    assert_eq!(
        store.end_user_sessions("nobody".into(), UserChange::Delete, None, 1600, 9000, &user_event()).await.unwrap(),
        None
    );
    store.end_user_sessions("sv".into(), UserChange::Delete, None, 1700, 9000, &user_event()).await.unwrap().unwrap();
    assert_eq!(store.user_by_username("sv").await.unwrap(), None);
    assert!(store.user_by_username("other").await.unwrap().is_some());
}

async fn sealed_successors_are_cleared_after_the_grace_window(db: TestDatabase) {
    let store = open(&db).await;
    family(&store).await;
    let rotated = store.rotate_refresh_token("r0", "portal", 1200, 5, successor("r1", 1200), &token("a1")).await;
    assert!(matches!(rotated.unwrap(), Rotation::Rotated { .. }));
    assert!(store.refresh_token("r0").await.unwrap().unwrap().successor_sealed.is_some());
    // Still inside the window (1200 + 5): kept.
    assert_eq!(store.clear_sealed_successors(1200, 100).await.unwrap(), 0);
    assert_eq!(store.clear_sealed_successors(1206, 100).await.unwrap(), 1);
    let r0 = store.refresh_token("r0").await.unwrap().unwrap();
    assert_eq!((r0.successor_sealed, r0.successor_hash.as_deref()), (None, Some("r1")), "reuse is still detected");
    assert_eq!(store.clear_sealed_successors(5000, 100).await.unwrap(), 0);
}

async fn partner_nonces_are_single_use(db: TestDatabase) {
    let store = open(&db).await;
    assert!(store.use_partner_nonce("ACME", "n-0123456789abcdef", 1300).await.unwrap());
    assert!(!store.use_partner_nonce("ACME", "n-0123456789abcdef", 1300).await.unwrap(), "a replay");
    assert!(store.use_partner_nonce("OTHER", "n-0123456789abcdef", 1300).await.unwrap(), "per partner");
    assert_eq!(store.delete_expired(Expiring::PartnerNonces, 1301, 10).await.unwrap(), 2);
}

fn refresh(hash: &str, family: &str, user_id: i64, issued_at: i64) -> RefreshToken {
    RefreshToken {
        token_hash: hash.into(),
        family_id: family.into(),
        client_id: "portal".into(),
        user_id,
        sid: Some("sid".into()),
        scope: "openid offline_access".into(),
        auth_time: 1000,
        amr: vec!["pwd".into()],
        offline: true,
        issued_at,
        expires_at: issued_at + 3600,
    }
}

/// `next` as the successor of the token being rotated: its row from the presented
/// token's family and user (as the refresh grant builds it).
fn successor(next: &str, now: i64) -> RefreshSuccessor {
    let template = refresh(next, "unused", 0, now);
    RefreshSuccessor {
        token_hash: template.token_hash.clone(),
        sealed: format!("sealed-{next}").into_bytes(),
        row: Box::new(move |presented| {
            Some(RefreshToken {
                family_id: presented.token.family_id.clone(),
                user_id: presented.token.user_id,
                token_hash: "replaced by the store".into(),
                ..template.clone()
            })
        }),
    }
}

/// A family born of a code, with its first refresh token `r0`.
async fn family(store: &Arc<dyn Store>) -> i64 {
    let user = store.insert_user(&new_user("sv"), &user_event()).await.unwrap();
    store.insert_session(&session("sid", user.id)).await.unwrap();
    store.insert_code(&code("fam", "portal", "sid", user.id)).await.unwrap();
    let redeemed = store
        .redeem_code("fam", "portal", 1120, pass(), &token("a0"), {
            let user_id = user.id;
            Box::new(move |_| Some(refresh("r0", "fam", user_id, 1120)))
        })
        .await
        .unwrap();
    assert!(matches!(redeemed, Redemption::Redeemed(_)));
    user.id
}

async fn refresh_rotation_grace_and_reuse(db: TestDatabase) {
    let store = open(&db).await;
    let user = family(&store).await;
    assert!(store.refresh_token("r0").await.unwrap().unwrap().is_live(1120));

    let rotate = |hash: &'static str, next: &'static str, jti: &'static str, now: i64| {
        let s = store.clone();
        async move { s.rotate_refresh_token(hash, "portal", now, 5, successor(next, now), &token(jti)).await.unwrap() }
    };
    match rotate("r0", "r1", "a1", 1200).await {
        Rotation::Rotated { presented, successor } => {
            assert_eq!((presented.token.token_hash.as_str(), presented.token.family_id.as_str()), ("r0", "fam"));
            assert_eq!(*successor, refresh("r1", "fam", user, 1200), "built from r0, with its own handle");
        }
        other => panic!("{other:?}"),
    }
    let r0 = store.refresh_token("r0").await.unwrap().unwrap();
    assert_eq!((r0.rotated_at, r0.successor_hash.as_deref()), (Some(1200), Some("r1")));
    let r1 = store.refresh_token("r1").await.unwrap().unwrap();
    assert_eq!((r1.token.family_id.as_str(), r1.token.user_id, r1.token.issued_at), ("fam", user, 1200));
    assert_eq!(store.access_token("a1").await.unwrap().unwrap().grant_id, "fam");
    // A duplicate within the grace window gets the same successor and revokes nothing.
    match rotate("r0", "r1-dup", "a2", 1204).await {
        Rotation::Grace { presented, successor, sealed } => {
            assert_eq!(presented.token.token_hash, "r0");
            assert_eq!(successor.token.token_hash, "r1");
            assert_eq!(sealed, b"sealed-r1");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(store.refresh_token("r1-dup").await.unwrap(), None, "no second descendant");
    assert!(store.access_token("a2").await.unwrap().is_some(), "the duplicate's access token is recorded");
    assert!(store.refresh_token("r1").await.unwrap().unwrap().is_live(1204));
    // Another client, an unknown token.
    let other = store.rotate_refresh_token("r1", "mobile", 1205, 5, successor("x", 1205), &token("ax")).await.unwrap();
    assert_eq!(other, Rotation::OtherClient);
    assert_eq!(rotate("nope", "y", "ay", 1205).await, Rotation::Unknown);
    // Reuse after the window revokes the whole family, access tokens included.
    // Two refresh tokens (r0, r1) and three access tokens (a0, a1, a2).
    assert_eq!(rotate("r0", "r1-late", "a3", 1206).await, Rotation::Reused { revoked: 5 });
    assert!(store.refresh_token("r1").await.unwrap().unwrap().revoked_at.is_some());
    for jti in ["a0", "a1", "a2"] {
        assert!(store.access_token(jti).await.unwrap().unwrap().revoked_at.is_some(), "{jti}");
    }
    assert_eq!(rotate("r1", "r2", "a4", 1207).await, Rotation::Revoked);
    // An expired, never rotated token.
    store.insert_code(&code("fam2", "portal", "sid", user)).await.unwrap();
    store
        .redeem_code(
            "fam2",
            "portal",
            1120,
            pass(),
            &token("b0"),
            Box::new(move |_| Some(refresh("s0", "fam2", user, 1120))),
        )
        .await
        .unwrap();
    assert_eq!(rotate("s0", "s1", "b1", 1120 + 3600).await, Rotation::Expired);
}

/// A successor whose builder refuses (a wider scope asked for) leaves the presented
/// token as it was, and records nothing.
async fn a_refused_rotation_changes_nothing(db: TestDatabase) {
    let store = open(&db).await;
    family(&store).await;
    let refused = RefreshSuccessor { row: Box::new(|_| None), ..successor("r1", 1200) };
    assert_eq!(
        store.rotate_refresh_token("r0", "portal", 1200, 5, refused, &token("a1")).await.unwrap(),
        Rotation::Refused
    );
    let r0 = store.refresh_token("r0").await.unwrap().unwrap();
    assert!(r0.is_live(1200), "still usable: {r0:?}");
    assert_eq!((r0.successor_hash, r0.successor_sealed), (None, None));
    assert_eq!(store.refresh_token("r1").await.unwrap(), None);
    assert_eq!(store.access_token("a1").await.unwrap(), None);
    // And the next rotation of r0 wins as usual.
    let next = store.rotate_refresh_token("r0", "portal", 1201, 5, successor("r1", 1201), &token("a1")).await.unwrap();
    assert!(matches!(next, Rotation::Rotated { .. }), "{next:?}");
}

async fn code_replay_revokes_the_refresh_family(db: TestDatabase) {
    let store = open(&db).await;
    family(&store).await;
    assert_eq!(
        store.redeem_code("fam", "portal", 1130, pass(), &token("z"), Box::new(|_| None)).await.unwrap(),
        Redemption::Replayed { revoked: 2 }
    );
    assert!(store.refresh_token("r0").await.unwrap().unwrap().revoked_at.is_some());
}

async fn fifty_concurrent_rotations_leave_one_live_descendant(db: TestDatabase) {
    let store = open(&db).await;
    family(&store).await;
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let s = store.clone();
            let next = successor(&format!("n{i}"), 1300);
            tokio::spawn(async move {
                s.rotate_refresh_token("r0", "portal", 1300, 5, next, &token(&format!("t{i}"))).await
            })
        })
        .collect();
    let results: Vec<Rotation> =
        futures::future::join_all(tasks).await.into_iter().map(|r| r.unwrap().unwrap()).collect();
    assert_eq!(results.iter().filter(|r| matches!(r, Rotation::Rotated { .. })).count(), 1);
    assert_eq!(results.iter().filter(|r| matches!(r, Rotation::Grace { .. })).count(), 49);
    let mut live = 0;
    for i in 0..50 {
        if let Some(t) = store.refresh_token(&format!("n{i}")).await.unwrap() {
            assert!(t.is_live(1300));
            live += 1;
        }
    }
    assert_eq!(live, 1, "exactly one live descendant");
}

async fn leases_and_cleanup(db: TestDatabase) {
    let store = open(&db).await;
    assert!(store.acquire_lease("cleanup", "a", 100, 130).await.unwrap());
    assert!(!store.acquire_lease("cleanup", "b", 110, 140).await.unwrap(), "a holds it");
    assert!(store.acquire_lease("cleanup", "a", 120, 150).await.unwrap(), "the holder renews");
    assert!(store.acquire_lease("cleanup", "b", 151, 180).await.unwrap(), "expired: b takes it");
    assert!(!store.acquire_lease("cleanup", "a", 152, 180).await.unwrap());

    let user = family(&store).await;
    for i in 0..25 {
        store.insert_code(&code(&format!("old{i}"), "portal", "sid", user)).await.unwrap();
    }
    let count = |table: &'static str| {
        let s = store.clone();
        async move { s.row_counts().await.unwrap().into_iter().find(|(t, _)| *t == table).unwrap().1 }
    };
    assert_eq!(count("authorization_codes").await, 26);
    assert_eq!(store.oldest_expired(Expiring::AuthorizationCodes, 2000).await.unwrap(), Some(1160));
    // Bounded batches: 10, 10, 6, then nothing.
    for expected in [10, 10, 6, 0] {
        assert_eq!(store.delete_expired(Expiring::AuthorizationCodes, 2000, 10).await.unwrap(), expected);
    }
    assert_eq!(store.oldest_expired(Expiring::AuthorizationCodes, 2000).await.unwrap(), None);
    // Not yet expired rows stay.
    assert_eq!(store.delete_expired(Expiring::RefreshTokens, 1120 + 3600, 10).await.unwrap(), 0);
    assert_eq!(store.delete_expired(Expiring::RefreshTokens, 1121 + 3600, 10).await.unwrap(), 1);
    assert_eq!(store.delete_expired(Expiring::Sessions, 2001, 10).await.unwrap(), 1);
    assert_eq!(count("session_clients").await, 0, "a session's clients go with it");
}

async fn a_code_that_fails_its_check_is_spent_without_tokens(db: TestDatabase) {
    let store = open(&db).await;
    let user = store.insert_user(&new_user("sv"), &user_event()).await.unwrap();
    store.insert_session(&session("sid", user.id)).await.unwrap();
    store.insert_code(&code("c1", "portal", "sid", user.id)).await.unwrap();
    let refused: CodeCheck = Box::new(|_| Err(khoa_core::code::CodeError::WrongVerifier));
    let refresh_for: RefreshFor = {
        let user_id = user.id;
        Box::new(move |_| Some(refresh("r-never", "c1", user_id, 1120)))
    };
    assert_eq!(
        store.redeem_code("c1", "portal", 1120, refused, &token("t1"), refresh_for).await.unwrap(),
        Redemption::Refused(khoa_core::code::CodeError::WrongVerifier)
    );
    assert_eq!(store.access_token("t1").await.unwrap(), None, "no access token recorded");
    assert_eq!(store.refresh_token("r-never").await.unwrap(), None, "no refresh token recorded");
    // Spent: the right verifier now is a replay, with nothing to revoke.
    assert_eq!(
        store.redeem_code("c1", "portal", 1121, pass(), &token("t2"), Box::new(|_| None)).await.unwrap(),
        Redemption::Replayed { revoked: 0 }
    );
    assert_eq!(store.access_token("t2").await.unwrap(), None);
}

/// The SQLite schema is the PostgreSQL one with SQLite's type names: same tables,
/// columns, types, nullability and indexes.
#[tokio::test]
async fn both_backends_have_the_same_schema() {
    let (sqlite, postgres) = (
        khoa_testkit::test_database(khoa_store::Backend::Sqlite).await,
        khoa_testkit::test_database(khoa_store::Backend::Postgres).await,
    );
    open(&sqlite).await;
    open(&postgres).await;
    // (table, column, type, not null), and index names.
    type Schema = (Vec<(String, String, String, bool)>, Vec<String>);
    let lite: Schema = {
        let path = sqlite.url.trim_start_matches("sqlite://");
        let conn = rusqlite::Connection::open(path).unwrap();
        let mut columns = conn
            .prepare(
                "SELECT m.name, p.name, p.type, p.\"notnull\" OR p.pk FROM sqlite_master m JOIN pragma_table_info(m.name) p \
                 WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name NOT LIKE '_sqlx%'",
            )
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, String>(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        columns.sort();
        let mut indexes = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<Vec<String>, _>>()
            .unwrap();
        indexes.sort();
        (columns, indexes)
    };
    let pg: Schema = {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&postgres.url).await.unwrap();
        let rows: Vec<(String, String, String, String)> = sqlx::query_as(
            "SELECT table_name::text, column_name::text, data_type::text, is_nullable::text FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name NOT LIKE '_sqlx%'",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();
        let sqlite_type = |t: &str| match t {
            "bigint" | "integer" => "INTEGER",
            "text" => "TEXT",
            "boolean" => "BOOLEAN",
            "bytea" => "BLOB",
            other => panic!("a type SQLite has no translation for: {other}"),
        };
        let mut columns: Vec<_> =
            rows.into_iter().map(|(t, c, ty, null)| (t, c, sqlite_type(&ty).to_string(), null == "NO")).collect();
        columns.sort();
        // Indexes the migrations create (not those of primary keys and UNIQUE constraints).
        let mut indexes: Vec<String> = sqlx::query_scalar(
            "SELECT indexname::text FROM pg_indexes i WHERE schemaname = current_schema() \
             AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();
        indexes.sort();
        (columns, indexes)
    };
    assert!(lite.0.len() > 100, "{} columns", lite.0.len());
    assert_eq!(lite.0, pg.0, "columns");
    assert_eq!(lite.1, pg.1, "indexes");
}

/// What each earlier schema held: rows written after migration N as the khoa of that
/// version wrote them (its columns only). `BYTES` is a byte string in the backend's
/// syntax; far-future expiries keep everything alive.
const UPGRADE_FIXTURES: &[(i64, &str)] = &[
    (
        1,
        "INSERT INTO clients (client_id, client_secret_hash, is_public, redirect_uris, post_logout_redirect_uris, \
           grant_types, scopes, skip_consent, client_name, contacts, metadata, id_token_signed_response_alg, \
           created_at, updated_at) VALUES ('old-app', NULL, TRUE, '[\"https://app.example.vn/cb\"]', '[]', \
           '[\"authorization_code\",\"refresh_token\"]', '[\"openid\",\"profile\",\"offline_access\"]', TRUE, \
           'Ứng dụng cũ', '[]', '{}', 'RS256', 1700000000, 1700000000);
         INSERT INTO users (username, password_hash, email, email_verified, name, created_at, updated_at) \
           VALUES ('Sv.Cu', '$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA', \
           'sv.cu@example.vn', TRUE, 'Sinh viên cũ', 1700000000, 1700000000);
         INSERT INTO signing_keys (kid, alg, generation, public_jwk, private_key_sealed, created_at, activates_at) \
           VALUES ('old-kid', 'RS256', 1, '{\"kty\":\"RSA\",\"kid\":\"old-kid\"}', BYTES, 1700000000, 1700000000);",
    ),
    (
        2,
        "INSERT INTO sessions (id_hash, sid, user_id, auth_time, amr, created_at, expires_at) \
           SELECT 'old-session', 'old-sid', id, 1700000000, '[\"pwd\"]', 1700000000, 4102444800 FROM users;
         INSERT INTO session_clients (sid, client_id, first_at) VALUES ('old-sid', 'old-app', 1700000000);
         INSERT INTO consents (user_id, client_id, scope, granted_at) \
           SELECT id, 'old-app', 'openid profile', 1700000000 FROM users;
         INSERT INTO access_tokens (jti, grant_id, client_id, user_id, sid, scope, issued_at, expires_at) \
           SELECT 'old-jti', 'old-code', 'old-app', id, 'old-sid', 'openid profile', 1700000000, 4102444800 FROM users;",
    ),
    (
        3,
        "INSERT INTO refresh_tokens (token_hash, family_id, client_id, user_id, sid, scope, auth_time, amr, offline, \
           issued_at, expires_at) SELECT 'old-refresh', 'old-code', 'old-app', id, 'old-sid', \
           'openid profile offline_access', 1700000000, '[\"pwd\"]', TRUE, 1700000000, 4102444800 FROM users;",
    ),
    (
        4,
        "INSERT INTO logout_deliveries (id, client_id, uri, sub, sid, status, attempts, created_at, next_attempt_at, \
           claimed_until, last_status, last_error, expires_at) VALUES ('old-delivery', 'old-app', \
           'https://app.example.vn/bc', '1', 'old-sid', 'failed', 30, 1700000000, 1700000000, 0, 500, 'HTTP 500', \
           4102444800);",
    ),
    (5, "INSERT INTO partners (code, client_id, key_sealed, created_at) VALUES ('OLD-PARTNER', 'old-app', BYTES, 1700000000);"),
    (
        11,
        "INSERT INTO audit_events (at, type, actor, client_id, detail) \
           VALUES (1700000000, 'client.created', 'cli', 'old-app', '{}');
         UPDATE users SET attributes = '{\"student_id\":\"2011\"}';",
    ),
    (
        12,
        "INSERT INTO account_tokens (token_hash, purpose, user_id, email, created_at, expires_at) \
           SELECT 'old-reset', 'password_reset', id, 'sv.cu@example.vn', 1700000000, 4102444800 FROM users;",
    ),
    (
        14,
        "INSERT INTO credentials (user_id, kind, name, data, counter, created_at) \
           SELECT id, 'totp', 'Điện thoại', 'sealed-secret', 57000000, 1700000000 FROM users;",
    ),
];

/// A database left by each earlier version, with that version's data in it, is brought
/// to the current schema by `migrate` (as `khoa serve` does at start), and everything
/// in it reads back through the current store: nothing lost, nothing reinterpreted.
async fn every_earlier_schema_with_data_upgrades(db: TestDatabase) {
    use khoa_store::Backend;
    let last = khoa_store::Schema::of(&[]).pending.last().map(|m| m.0).unwrap();
    let bytes = match db.backend {
        Backend::Sqlite => "X'00FF'",
        Backend::Postgres => "'\\x00ff'::bytea",
    };
    for from in 1..last {
        // A database of its own per starting version, beside the test's.
        let url = match db.backend {
            Backend::Sqlite => format!("sqlite://{}/v{from}.db", db.dir.path().display()),
            Backend::Postgres => {
                use sqlx::Connection;
                let name = format!("{}_v{from}", db.url.rsplit('/').next().unwrap());
                let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
                sqlx::raw_sql(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.unwrap();
                let mut url = url::Url::parse(&db.url).unwrap();
                url.set_path(&name);
                url.to_string()
            }
        };
        let at = TestDatabase { url: url.clone(), backend: db.backend, dir: tempfile::tempdir().unwrap() };
        for version in 1..=from {
            khoa_store::migrate_to(&url, version).await.unwrap();
            if let Some((_, sql)) = UPGRADE_FIXTURES.iter().find(|f| f.0 == version) {
                raw(&at, &sql.replace("BYTES", bytes)).await;
            }
        }
        let store = khoa_store::connect(&url).await.unwrap();
        assert_eq!(store.schema().await.unwrap().applied, from as usize, "from {from}");
        store.migrate().await.unwrap_or_else(|e| panic!("from {from}: {e}"));
        assert!(store.schema().await.unwrap().pending.is_empty());
        let had = |v: i64| from >= v;

        let client = store.client("old-app").await.unwrap().unwrap();
        assert_eq!(client.redirect_uris, ["https://app.example.vn/cb"], "from {from}");
        assert_eq!(client.client_name.as_deref(), Some("Ứng dụng cũ"));
        assert!(client.is_public(), "from {from}");
        // Migration 9 made a public client's method `none`.
        assert_eq!(client.token_endpoint_auth_method(), "none", "from {from}");
        let user = store.user_by_username("sv.cu").await.unwrap().unwrap_or_else(|| panic!("from {from}: by key"));
        assert_eq!(user.username, "Sv.Cu");
        assert_eq!(
            user.password_hash.as_deref(),
            Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"),
            "from {from}: the password moved without a reset"
        );
        assert!(user.email_verified && user.name.as_deref() == Some("Sinh viên cũ"));
        let keys = store.signing_keys().await.unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(
            (keys[0].timeline.kid.as_str(), keys[0].private_key_sealed.as_slice()),
            ("old-kid", &[0u8, 255][..])
        );
        if had(2) {
            let session = store.session("old-session").await.unwrap().unwrap();
            assert_eq!((session.sid.as_str(), session.user_id), ("old-sid", user.id), "from {from}");
            assert_eq!(store.session_clients("old-sid").await.unwrap(), ["old-app"]);
            assert_eq!(store.consent(user.id, "old-app").await.unwrap().as_deref(), Some("openid profile"));
            let access = store.access_token("old-jti").await.unwrap().unwrap();
            assert_eq!((access.client_id.as_str(), access.user_id), ("old-app", Some(user.id)));
        }
        if had(3) {
            let refresh = store.refresh_token("old-refresh").await.unwrap().unwrap();
            assert_eq!((refresh.token.user_id, refresh.revoked_at), (user.id, None), "from {from}");
        }
        if had(4) {
            let deliveries = store.deliveries(10).await.unwrap();
            assert_eq!(deliveries.iter().map(|d| d.status.as_str()).collect::<Vec<_>>(), ["failed"], "from {from}");
        }
        if had(5) {
            let partner = store.partner("OLD-PARTNER").await.unwrap().unwrap();
            assert_eq!((partner.key_sealed.as_slice(), partner.require_nonce), (&[0u8, 255][..], false));
        }
        if had(11) {
            assert_eq!(user.attributes.get("student_id").map(String::as_str), Some("2011"), "from {from}");
            let filter = AuditFilter { client_id: Some("old-app".into()), limit: 10, ..Default::default() };
            assert_eq!(store.audit_events(&filter).await.unwrap().len(), 1);
        }
        if had(12) {
            let purpose = khoa_core::account::Purpose::PasswordReset;
            assert!(store.account_token("old-reset", purpose, 1_800_000_000).await.unwrap().is_some(), "from {from}");
        }
        let credentials = store.credentials(user.id).await.unwrap();
        let kinds: Vec<&str> = credentials.iter().map(|c| c.method.as_str()).collect();
        let expected: &[&str] = if had(14) { &["password", "totp"] } else { &["password"] };
        let mut sorted = kinds.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, expected, "from {from}");
        if had(14) {
            let totp = credentials.iter().find(|c| c.method.as_str() == "totp").unwrap();
            assert_eq!(
                (totp.data.as_str(), totp.counter, totp.name.as_deref()),
                ("sealed-secret", 57000000, Some("Điện thoại"))
            );
        }
        // And the upgraded database keeps working: a new user next to the old one.
        store.insert_user(&new_user("sv.moi"), &user_event()).await.unwrap_or_else(|e| panic!("from {from}: {e}"));
        drop(store);
        if let Backend::Postgres = db.backend {
            let name = url.rsplit('/').next().unwrap().to_string();
            raw(&db, &format!("DROP DATABASE {name} WITH (FORCE)")).await;
        }
    }
}

both_backends!(
    every_earlier_schema_with_data_upgrades,
    a_code_that_fails_its_check_is_spent_without_tokens,
    refresh_rotation_grace_and_reuse,
    a_refused_rotation_changes_nothing,
    code_replay_revokes_the_refresh_family,
    fifty_concurrent_rotations_leave_one_live_descendant,
    leases_and_cleanup,
    sessions_interactions_and_consents,
    deliveries_are_paged_and_retried,
    codes_are_single_use_and_replay_revokes,
    a_code_outlives_no_logout,
    parallel_redemptions_admit_exactly_one,
    client_auth_failures_are_counted,
    login_attempts_are_reserved_atomically,
    a_refused_reservation_counts_under_no_key,
    a_successful_login_settles_its_reservation,
    ending_a_users_sessions_revokes_and_notifies_in_one_step,
    account_links_are_single_use,
    reset_links_end_with_the_password_or_the_address_they_were_for,
    usernames_are_unique_by_key_and_old_collisions_are_reported,
    an_address_is_verified_on_one_account_only,
    credentials_are_kept_counted_and_used_once,
    passwords_move_into_credentials_without_a_reset,
    pending_migrations_are_reported_and_a_newer_schema_refused,
    a_password_change_keeps_its_session_and_access_is_revoked_per_client,
    sealed_successors_are_cleared_after_the_grace_window,
    partner_nonces_are_single_use,
    clients_round_trip_every_field,
    client_updates_are_conditional,
    audit_events_filter_and_page,
    clients_are_listed_by_pages,
    users_have_unique_names_and_stable_ids,
    users_are_paged_searched_disabled_and_updated_conditionally,
    imports_skip_what_exists_and_repeat_nothing,
    concurrent_signups_for_one_username_admit_exactly_one,
    signing_key_generations_are_unique_per_algorithm,
    every_change_bumps_the_epoch,
    migrations_are_idempotent_and_data_survives_reopen,
);

#[tokio::test]
async fn unsupported_database_url_is_refused() {
    assert!(matches!(khoa_store::connect("mysql://x/y").await, Err(StoreError::UnsupportedUrl)));
}
