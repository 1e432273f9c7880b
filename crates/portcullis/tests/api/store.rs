//! The storage suite: every test runs against both back ends, SQLite and
//! the real PostgreSQL of `PORTCULLIS_TEST_POSTGRES`.

const DAY30: i64 = 30 * 86400;

use portcullis::auth::password::{self, StoredHash};
use portcullis::domain::UserKey;
use portcullis::domain::{Scopes, Username};
use portcullis::store::{KeyRow, NewUser, Rotation, Session, SharedStore, UserPatch};
use tempfile::TempDir;

use crate::helpers::fresh_postgres_database;

struct Backend {
    name: &'static str,
    store: SharedStore,
    _dir: Option<TempDir>,
}

async fn backends() -> Vec<Backend> {
    let dir = tempfile::tempdir().unwrap();
    let sqlite_url = format!("sqlite://{}", dir.path().join("store.db").display());
    let sqlite = portcullis::store::open(&sqlite_url, &Default::default()).await.unwrap();
    let postgres = portcullis::store::open(&fresh_postgres_database().await, &Default::default()).await.unwrap();
    vec![
        Backend { name: "sqlite", store: sqlite, _dir: Some(dir) },
        Backend { name: "postgres", store: postgres, _dir: None },
    ]
}

fn user(name: &str, hash: &StoredHash) -> NewUser {
    NewUser {
        username: Username::parse(name).unwrap(),
        email: None,
        full_name: None,
        scopes: Scopes::parse("items").unwrap(),
        disabled: false,
        password_hash: hash.clone(),
    }
}

fn session(id: &str, user_key: &str) -> Session {
    Session { id: id.into(), user_key: UserKey::of(user_key), scope: "items".into(), client_id: None }
}

/// The scopes `user()` gives.
fn items() -> Scopes {
    Scopes::parse("items").unwrap()
}

fn hash() -> StoredHash {
    // A cheap real bcrypt hash: these tests are about storage, not hashing.
    StoredHash::new(bcrypt::hash("some password", 4).unwrap())
}

#[tokio::test]
async fn users_are_unique_by_key_and_found_by_it() {
    for b in backends().await {
        let h = hash();
        b.store.insert_user(&user("Alice", &h), 1).await.unwrap();

        let clash = b.store.insert_user(&user("ALICE", &h), 1).await;
        assert!(matches!(clash, Err(portcullis::store::StoreError::Conflict)), "{}", b.name);
        let found = b.store.user_by_key(&UserKey::of("alice")).await.unwrap().unwrap();
        assert_eq!(found.username.as_str(), "Alice", "{}", b.name);
        assert_eq!(found.scopes.to_string(), "items");
        assert!(!found.disabled);
        assert_eq!(b.store.count_users().await.unwrap(), 1);
        assert!(b.store.user_by_key(&UserKey::of("bob")).await.unwrap().is_none());
    }
}

#[tokio::test]
async fn users_list_in_key_order_after_a_cursor() {
    for b in backends().await {
        let h = hash();
        for name in ["carol", "Bob", "alice", "dave"] {
            b.store.insert_user(&user(name, &h), 1).await.unwrap();
        }

        let first: Vec<String> =
            b.store.list_users(None, 2).await.unwrap().into_iter().map(|u| u.username.as_str().to_owned()).collect();
        let rest: Vec<String> = b
            .store
            .list_users(Some(&UserKey::of("bob")), 10)
            .await
            .unwrap()
            .into_iter()
            .map(|u| u.username.as_str().to_owned())
            .collect();

        assert_eq!(first, ["alice", "Bob"], "{}", b.name);
        assert_eq!(rest, ["carol", "dave"], "{}", b.name);
    }
}

#[tokio::test]
async fn a_patch_changes_only_what_it_carries_and_can_clear_fields() {
    for b in backends().await {
        let h = hash();
        let mut new = user("erin", &h);
        new.email = Some("erin@example.com".into());
        new.full_name = Some("Erin".into());
        b.store.insert_user(&new, 1).await.unwrap();

        let patch = UserPatch { email: Some(None), scopes: Some(Scopes::parse("a b").unwrap()), ..Default::default() };
        let updated = b.store.update_user(&UserKey::of("erin"), &patch, 2).await.unwrap().unwrap();

        assert_eq!(updated.email, None, "{}", b.name);
        assert_eq!(updated.full_name.as_deref(), Some("Erin"));
        assert_eq!(updated.scopes.to_string(), "a b");
        assert_eq!(updated.password_hash, h);
        assert!(b.store.update_user(&UserKey::of("nobody"), &patch, 2).await.unwrap().is_none());
    }
}

#[tokio::test]
async fn disabling_or_a_new_password_ends_sessions_but_a_profile_change_does_not() {
    for b in backends().await {
        let h = hash();
        b.store.insert_user(&user("fay", &h), 1).await.unwrap();
        assert!(b.store.create_session(&session("s1", "fay"), &h, &items(), "r1", 100, 1).await.unwrap());

        b.store
            .update_user(&UserKey::of("fay"), &UserPatch { full_name: Some(Some("F".into())), ..Default::default() }, 2)
            .await
            .unwrap();
        let standing = b.store.token_standing(&UserKey::of("fay"), Some("s1"), "j").await.unwrap().unwrap();
        assert!(standing.session_scope.is_some(), "{}", b.name);

        b.store
            .update_user(&UserKey::of("fay"), &UserPatch { disabled: Some(true), ..Default::default() }, 3)
            .await
            .unwrap();
        let standing = b.store.token_standing(&UserKey::of("fay"), Some("s1"), "j").await.unwrap().unwrap();
        assert!(standing.session_scope.is_none() && standing.user_disabled, "{}", b.name);
    }
}

#[tokio::test]
async fn a_session_does_not_start_if_the_hash_changed_or_the_user_was_disabled_meanwhile() {
    for b in backends().await {
        let (old, new) = (hash(), hash());
        b.store.insert_user(&user("gus", &old), 1).await.unwrap();
        b.store
            .update_user(&UserKey::of("gus"), &UserPatch { password_hash: Some(new.clone()), ..Default::default() }, 2)
            .await
            .unwrap();

        assert!(
            !b.store.create_session(&session("s1", "gus"), &old, &items(), "r1", 100, 3).await.unwrap(),
            "{}",
            b.name
        );
        assert!(b.store.create_session(&session("s2", "gus"), &new, &items(), "r2", 100, 3).await.unwrap());
        b.store
            .update_user(&UserKey::of("gus"), &UserPatch { disabled: Some(true), ..Default::default() }, 4)
            .await
            .unwrap();
        assert!(!b.store.create_session(&session("s3", "gus"), &new, &items(), "r3", 100, 5).await.unwrap());
    }
}

#[tokio::test]
async fn a_rotation_retires_the_old_token_and_reuse_revokes_the_family() {
    for b in backends().await {
        let h = hash();
        b.store.insert_user(&user("hal", &h), 1).await.unwrap();
        b.store.create_session(&session("s1", "hal"), &h, &items(), "r1", 100, 1).await.unwrap();

        let first = b.store.rotate_refresh_token("r1", "r2", 200, DAY30, 2).await.unwrap();
        assert_eq!(first, Rotation::Rotated(session("s1", "hal")), "{}", b.name);
        assert!(matches!(b.store.rotate_refresh_token("r1", "r3", 200, DAY30, 3).await.unwrap(), Rotation::Reused(_)));
        assert_eq!(
            b.store.rotate_refresh_token("r2", "r4", 200, DAY30, 4).await.unwrap(),
            Rotation::Invalid,
            "family revoked"
        );
        assert_eq!(b.store.rotate_refresh_token("unknown", "r5", 200, DAY30, 4).await.unwrap(), Rotation::Invalid);
        assert!(
            b.store
                .token_standing(&UserKey::of("hal"), Some("s1"), "j")
                .await
                .unwrap()
                .unwrap()
                .session_scope
                .is_none()
        );
    }
}

#[tokio::test]
async fn an_expired_refresh_token_does_not_rotate() {
    for b in backends().await {
        let h = hash();
        b.store.insert_user(&user("ivy", &h), 1).await.unwrap();
        b.store.create_session(&session("s1", "ivy"), &h, &items(), "r1", 100, 1).await.unwrap();

        assert_eq!(
            b.store.rotate_refresh_token("r1", "r2", 300, DAY30, 100).await.unwrap(),
            Rotation::Invalid,
            "{}",
            b.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_rotations_of_one_token_rotate_at_most_once() {
    for b in backends().await {
        let h = hash();
        b.store.insert_user(&user("jan", &h), 1).await.unwrap();
        for round in 0..5 {
            let (sid, token) = (format!("s{round}"), format!("r{round}"));
            b.store.create_session(&session(&sid, "jan"), &h, &items(), &token, 1000, 1).await.unwrap();
            let tasks: Vec<_> = (0..8)
                .map(|i| {
                    let (store, token) = (b.store.clone(), token.clone());
                    tokio::spawn(async move {
                        store.rotate_refresh_token(&token, &format!("{token}-{i}"), 2000, DAY30, 2).await
                    })
                })
                .collect();
            let mut rotated = 0;
            for task in tasks {
                if matches!(task.await.unwrap().unwrap(), Rotation::Rotated(_)) {
                    rotated += 1;
                }
            }
            assert_eq!(rotated, 1, "{} round {round}", b.name);
        }
    }
}

#[tokio::test]
async fn the_deny_list_is_checked_and_pruned_after_expiry() {
    for b in backends().await {
        let h = hash();
        b.store.insert_user(&user("kai", &h), 1).await.unwrap();
        b.store.deny_token("jti-1", 50, 10).await.unwrap();
        b.store.deny_token("jti-1", 50, 10).await.unwrap();

        assert!(
            b.store.token_standing(&UserKey::of("kai"), None, "jti-1").await.unwrap().unwrap().denied,
            "{}",
            b.name
        );
        assert!(!b.store.token_standing(&UserKey::of("kai"), None, "jti-2").await.unwrap().unwrap().denied);
        assert!(b.store.prune(60, 0).await.unwrap() >= 1);
        assert!(!b.store.token_standing(&UserKey::of("kai"), None, "jti-1").await.unwrap().unwrap().denied);
    }
}

#[tokio::test]
async fn deleting_a_user_removes_their_sessions() {
    for b in backends().await {
        let h = hash();
        b.store.insert_user(&user("lee", &h), 1).await.unwrap();
        b.store.create_session(&session("s1", "lee"), &h, &items(), "r1", 100, 1).await.unwrap();

        assert!(b.store.delete_user(&UserKey::of("lee"), 10).await.unwrap(), "{}", b.name);
        assert!(b.store.refresh_token_info("r1", 2).await.unwrap().is_none());
        assert!(!b.store.delete_user(&UserKey::of("lee"), 10).await.unwrap());
    }
}

fn key(kid: &str, at: i64) -> KeyRow {
    KeyRow {
        kid: kid.into(),
        algorithm: "EdDSA".into(),
        sealed_private: Some(vec![1, 2, 3]),
        public_jwk: None,
        created_at: at,
        superseded_at: None,
    }
}

#[tokio::test]
async fn the_first_key_is_created_once_and_rotation_keeps_one_active() {
    for b in backends().await {
        assert!(b.store.add_signing_key(&key("k1", 1), true).await.unwrap(), "{}", b.name);
        assert!(!b.store.add_signing_key(&key("k2", 2), true).await.unwrap());
        assert!(b.store.add_signing_key(&key("k3", 3), false).await.unwrap());

        let keys = b.store.list_keys().await.unwrap();
        let active: Vec<&str> = keys.iter().filter(|k| k.superseded_at.is_none()).map(|k| k.kid.as_str()).collect();
        assert_eq!(active, ["k3"], "{}", b.name);
        assert_eq!(keys.iter().find(|k| k.kid == "k1").unwrap().superseded_at, Some(3));
        assert_eq!(keys[0].sealed_private.as_deref(), Some(&[1u8, 2, 3][..]));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_first_keys_leave_exactly_one() {
    for b in backends().await {
        let tasks: Vec<_> = (0..6)
            .map(|i| {
                let store = b.store.clone();
                tokio::spawn(async move { store.add_signing_key(&key(&format!("k{i}"), 1), true).await })
            })
            .collect();
        let mut created = 0;
        for task in tasks {
            if task.await.unwrap().unwrap() {
                created += 1;
            }
        }
        assert_eq!(created, 1, "{}", b.name);
        assert_eq!(b.store.list_keys().await.unwrap().len(), 1);
    }
}

#[tokio::test]
async fn failures_count_in_a_window_and_can_be_read_or_cleared() {
    for b in backends().await {
        assert_eq!(b.store.failures("user:x", 100, 60).await.unwrap(), None, "{}", b.name);
        assert_eq!(b.store.record_failure("user:x", 100, 60).await.unwrap(), (1, 100), "{}", b.name);
        assert_eq!(b.store.record_failure("user:x", 110, 60).await.unwrap(), (2, 100));
        assert_eq!(b.store.failures("user:x", 120, 60).await.unwrap(), Some((2, 100)));
        assert_eq!(b.store.failures("user:x", 160, 60).await.unwrap(), None, "the window ended");
        assert_eq!(b.store.record_failure("user:x", 161, 60).await.unwrap(), (1, 161), "a new window");
        b.store.clear_attempts("user:x").await.unwrap();
        assert_eq!(b.store.failures("user:x", 162, 60).await.unwrap(), None);
        assert_eq!(b.store.record_failure("user:x", 170, 60).await.unwrap(), (1, 170));
        assert_eq!(b.store.prune(0, 171).await.unwrap(), 1);
    }
}

#[tokio::test]
async fn the_highest_bcrypt_cost_left_is_known() {
    for b in backends().await {
        assert_eq!(b.store.max_bcrypt_cost().await.unwrap(), 0, "{}", b.name);
        b.store.insert_user(&user("ned", &password::hash("some password")), 1).await.unwrap();
        assert_eq!(b.store.max_bcrypt_cost().await.unwrap(), 0);
        b.store.insert_user(&user("oz", &hash()), 1).await.unwrap();
        let cost6 = StoredHash::new(bcrypt::hash("x", 6).unwrap());
        b.store.insert_user(&user("pam", &cost6), 1).await.unwrap();
        assert_eq!(b.store.max_bcrypt_cost().await.unwrap(), 6, "{}", b.name);
    }
}

#[tokio::test]
async fn a_hash_upgrade_never_undoes_a_password_change() {
    for b in backends().await {
        let (old, changed, upgrade) = (hash(), hash(), password::hash("some password"));
        b.store.insert_user(&user("max", &old), 1).await.unwrap();
        b.store
            .update_user(
                &UserKey::of("max"),
                &UserPatch { password_hash: Some(changed.clone()), ..Default::default() },
                2,
            )
            .await
            .unwrap();

        assert!(!b.store.upgrade_password_hash(&UserKey::of("max"), &old, &upgrade, 3).await.unwrap(), "{}", b.name);
        assert_eq!(b.store.user_by_key(&UserKey::of("max")).await.unwrap().unwrap().password_hash, changed);
    }
}
