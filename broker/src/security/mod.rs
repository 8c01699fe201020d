//! Users, credentials and ACLs (`--auth`; docs/security.md).
//!
//! Who a call comes from is found once per call at the gRPC edge ([`Security::authenticate`],
//! from its `authorization` metadata); what it may do is asked by each service before it
//! touches anything ([`Security::authorize`]), so a denied call learns nothing about the
//! resource it named, not even whether it exists.
//!
//! Users and ACLs are one JSON document, replaced whole on every change and held in memory as
//! an immutable snapshot: standalone, in the `meta` column family (synced); in a cluster, in
//! the replicated metadata (one raft command, compare-and-set on the document's version), so
//! every member sees the same users and ACLs. Members recognise each other by their
//! certificates ([`member`]), not by users. Password checks are argon2id
//! (slow on purpose): a verified credential is remembered, keyed by a keyed digest of what the
//! client sent, until users change, so a client pays for it once, not per call. At most
//! [`MAX_CONCURRENT_VERIFICATIONS`] argon2 checks run at once, so guessing passwords cannot
//! take every core.

pub mod acl;
pub mod member;
pub mod secret;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, watch};
use weir_common::UserName;
use weir_common::limits::{MAX_ACLS, MAX_PASSWORD_BYTES, MAX_USERS, MIN_PASSWORD_CHARS};

pub use acl::{Acl, Operation, Resource, ResourceType};
use secret::{Presented, credential_digest, token_digest};

use crate::error::BrokerError;
use crate::storage::{Cf, Durability, StorageError, Store};
use weir_codec::keys::SECURITY_KEY;

/// The superuser made when `--auth` starts with none.
pub const BOOTSTRAP_USER: &str = "admin";
/// Where the bootstrap superuser's token is written, in the data directory.
pub const BOOTSTRAP_TOKEN_FILE: &str = "admin.token";
/// argon2 checks at once (each takes ~19 MiB and a core for tens of ms).
pub const MAX_CONCURRENT_VERIFICATIONS: usize = 2;
/// Verified credentials remembered; past it the cache starts over.
pub const MAX_VERIFIED_CREDENTIALS: usize = 10_000;
/// How long a change overtaken by other members' changes is made again (cluster mode).
const CHANGE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for this member to apply a change another member made.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between two attempts at making the bootstrap superuser while the cluster has no
/// controller.
const BOOTSTRAP_RETRY: Duration = Duration::from_secs(1);

/// Who a call comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// Authentication is off: everything is allowed.
    Anonymous,
    User(Arc<str>),
    /// Another member of the cluster (its certificate is signed by `--tls-peer-ca`): may do
    /// anything, and is the only caller of the cluster's internal services.
    Member,
}

/// How a user proves who it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum Credential {
    /// argon2id PHC string.
    Password { argon2: String },
    /// SHA-256 of the token, hex.
    Token { sha256: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub credential: Credential,
    pub superuser: bool,
    pub created_ms: i64,
}

/// Everything stored: users and ACLs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// Bumped whenever users change: credentials verified before are checked again.
    generation: u64,
    users: BTreeMap<String, User>,
    acls: BTreeSet<Acl>,
}

/// (De)serializes the shared document inline (`#[serde(with = "security::shared")]`), so the
/// cluster metadata can hold it behind an `Arc` and publish it without copying.
pub mod shared {
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::State;

    pub fn serialize<S: Serializer>(state: &Arc<State>, s: S) -> Result<S::Ok, S::Error> {
        state.as_ref().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Arc<State>, D::Error> {
        State::deserialize(d).map(Arc::new)
    }
}

impl State {
    /// Adds a token user named `name` (for other modules' unit tests).
    #[cfg(test)]
    pub(crate) fn add_test_user(&mut self, name: &str) {
        self.users.insert(
            name.into(),
            User {
                credential: Credential::Token {
                    sha256: String::new(),
                },
                superuser: false,
                created_ms: 0,
            },
        );
    }

    fn superusers(&self) -> usize {
        self.users.values().filter(|u| u.superuser).count()
    }

    /// Whether `user` may do `op` on `resource`.
    fn allows(&self, user: &str, resource: Resource<'_>, op: Operation) -> bool {
        match self.users.get(user) {
            None => false,
            Some(u) if u.superuser => true,
            Some(_) => self.acls.iter().any(|a| a.allows(user, resource, op)),
        }
    }

    /// Whether `user` holds any permission on `resource`.
    fn touches(&self, user: &str, resource: Resource<'_>) -> bool {
        match self.users.get(user) {
            None => false,
            Some(u) if u.superuser => true,
            Some(_) => self.acls.iter().any(|a| a.touches(user, resource)),
        }
    }
}

/// A user as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    /// "password" or "token".
    pub credential: &'static str,
    pub superuser: bool,
    pub created_ms: i64,
}

/// A credential that proved a user, and the users' generation then.
type Verified = (Arc<str>, u64);

/// The document and its version (how many times it was replaced; cluster mode).
#[derive(Debug, Clone)]
struct Versioned {
    version: u64,
    state: Arc<State>,
}

/// What the quorum made of a proposed document (cluster mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proposed {
    /// It replaced the document it was based on.
    Taken,
    /// Another change came first: the cluster's document is at `current`.
    Stale { current: u64 },
}

/// Proposes to the cluster's quorum that the document at version `base` be replaced by
/// `state` (cluster mode; given by whoever holds the cluster, so this module never names it).
pub type Proposer = Box<
    dyn Fn(
            u64,
            Arc<State>,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<Proposed, BrokerError>> + Send>,
        > + Send
        + Sync,
>;

pub struct Security {
    enabled: bool,
    store: Store,
    data_dir: PathBuf,
    state: RwLock<Versioned>,
    /// Set in cluster mode: changes go through the metadata quorum.
    cluster: OnceLock<Proposer>,
    /// The version served, for a change overtaken by another to wait on.
    served: watch::Sender<u64>,
    /// One change at a time on this broker (read, modify, store or propose, publish).
    changes: tokio::sync::Mutex<()>,
    /// Digest of an `authorization` value → the user it proved, and the generation then.
    verified: Mutex<HashMap<[u8; 32], Verified>>,
    cache_key: [u8; 32],
    verifying: Semaphore,
    /// Password hashes checked so far (argon2id, the costly part of authenticating).
    verifications: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Security {
    /// Users and credentials stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Security")
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

fn storage(e: impl std::fmt::Display) -> BrokerError {
    BrokerError::Storage(e.to_string())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A hash to check passwords of unknown users against, so a wrong user name takes as long
/// to refuse as a wrong password (the answer's timing does not tell which users exist).
fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| secret::hash_password("decoy password").unwrap_or_default())
}

fn invalid_credentials() -> BrokerError {
    BrokerError::Unauthenticated("invalid credentials".into())
}

/// `state` with the bootstrap superuser, whose token's digest is `token_sha256`; refused if
/// a user has its name.
fn with_bootstrap_user(state: &mut State, token_sha256: &str) -> Result<(), BrokerError> {
    if state.users.contains_key(BOOTSTRAP_USER) {
        return Err(BrokerError::InvalidArgument(format!(
            "--auth needs a superuser and there is none; the user {BOOTSTRAP_USER:?} \
             that would be made exists: make a superuser with `weir user add` before \
             turning --auth on, or remove {BOOTSTRAP_USER:?}"
        )));
    }
    state.users.insert(
        BOOTSTRAP_USER.into(),
        User {
            credential: Credential::Token {
                sha256: token_sha256.to_string(),
            },
            superuser: true,
            created_ms: now_ms(),
        },
    );
    state.generation += 1;
    Ok(())
}

fn log_bootstrap(path: &Path) {
    tracing::warn!(
        user = BOOTSTRAP_USER,
        token_file = %path.display(),
        "auth is on and there was no superuser: made one; its token is in the file \
         (read it, then delete the file)"
    );
}

impl Security {
    /// Loads users and ACLs. Standalone, with `enabled` and no superuser yet, makes the
    /// superuser [`BOOTSTRAP_USER`] with a token written to [`BOOTSTRAP_TOKEN_FILE`] in
    /// `data_dir` (readable by the broker's user only). `clustered`: users and ACLs are the
    /// cluster's ([`Security::replicate`]); the local document is not read.
    pub fn open(
        store: Store,
        enabled: bool,
        data_dir: &Path,
        clustered: bool,
    ) -> Result<Self, BrokerError> {
        let stored = match clustered {
            true => None,
            false => store.get(Cf::Meta, SECURITY_KEY).map_err(storage)?,
        };
        let mut state: State = match stored {
            Some(doc) => serde_json::from_slice(&doc)
                .map_err(|e| storage(format!("the stored users and ACLs are corrupt: {e}")))?,
            None => State::default(),
        };
        if enabled && !clustered && state.superusers() == 0 {
            let token = secret::new_token().map_err(storage)?;
            with_bootstrap_user(&mut state, &token_digest(&token))?;
            let path = data_dir.join(BOOTSTRAP_TOKEN_FILE);
            write_private(&path, &token)
                .map_err(|e| storage(format!("cannot write {}: {e}", path.display())))?;
            put_document(&store, &serde_json::to_vec(&state).map_err(storage)?).map_err(storage)?;
            log_bootstrap(&path);
        }
        Ok(Self {
            enabled,
            store,
            data_dir: data_dir.to_path_buf(),
            state: RwLock::new(Versioned {
                version: 0,
                state: Arc::new(state),
            }),
            cluster: OnceLock::new(),
            served: watch::Sender::new(0),
            changes: tokio::sync::Mutex::new(()),
            verified: Mutex::new(HashMap::new()),
            cache_key: secret::random_key().map_err(storage)?,
            verifying: Semaphore::new(MAX_CONCURRENT_VERIFICATIONS),
            verifications: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Whether calls must authenticate (`--auth`).
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    fn snapshot(&self) -> Arc<State> {
        Arc::clone(&self.versioned().state)
    }

    fn versioned(&self) -> Versioned {
        self.state.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Serves `state` from now on, unless what is served is as new (`version`).
    fn publish(&self, version: u64, state: Arc<State>) {
        let mut current = self.state.write().unwrap_or_else(|p| p.into_inner());
        if version > current.version {
            *current = Versioned { version, state };
            self.served.send_replace(version);
        }
    }

    /// Cluster mode: serves the cluster's document at `version` that this member applied, if
    /// it is newer than what is served (the holder of the cluster calls this as metadata
    /// applies).
    pub fn follow(&self, version: u64, state: Arc<State>) {
        self.publish(version, state);
    }

    /// Cluster mode: users and ACLs become the cluster's (followed through
    /// [`Self::follow`]), and changes go to the quorum through `propose`. `bootstrap`: this
    /// member (the one with the lowest id) makes the bootstrap superuser when `--auth` finds
    /// none (its token in its data dir).
    pub fn replicate(self: &Arc<Self>, propose: Proposer, bootstrap: bool) {
        if self.cluster.set(propose).is_err() {
            return;
        }
        if self.enabled && bootstrap {
            tokio::spawn(Arc::clone(self).bootstrap_cluster());
        }
    }

    /// Makes the bootstrap superuser through the quorum unless the cluster has a superuser;
    /// retried while there is no controller.
    async fn bootstrap_cluster(self: Arc<Self>) {
        let token = match secret::new_token() {
            Ok(t) => t,
            Err(e) => return tracing::error!(error = %e, "cannot make the bootstrap token"),
        };
        let digest = token_digest(&token);
        let path = self.data_dir.join(BOOTSTRAP_TOKEN_FILE);
        // Written first (under another name, so an earlier token file is never clobbered), so
        // a superuser never exists whose token nobody has; renamed once the cluster took it.
        let pending = self.data_dir.join(format!("{BOOTSTRAP_TOKEN_FILE}.new"));
        loop {
            if self.snapshot().superusers() > 0 {
                return;
            }
            if let Err(e) = write_private(&pending, &token) {
                return tracing::error!(error = %e, file = %pending.display(), "cannot write the bootstrap token");
            }
            let made = self
                .change(|s| {
                    if s.superusers() > 0 {
                        return Ok(false);
                    }
                    with_bootstrap_user(s, &digest).map(|()| true)
                })
                .await;
            match made {
                Ok(true) => {
                    return match std::fs::rename(&pending, &path) {
                        Ok(()) => log_bootstrap(&path),
                        Err(e) => tracing::error!(error = %e, "made the bootstrap superuser, but \
                            its token stays in {}", pending.display()),
                    };
                }
                Ok(false) => {
                    let _ = std::fs::remove_file(&pending);
                    return;
                }
                Err(BrokerError::InvalidArgument(reason)) => {
                    let _ = std::fs::remove_file(&pending);
                    return tracing::error!("{reason}");
                }
                Err(e) => {
                    tracing::info!(error = %e, "waiting for the cluster to make the bootstrap superuser");
                    tokio::time::sleep(BOOTSTRAP_RETRY).await;
                }
            }
        }
    }

    /// Who sent a call with this `authorization` metadata. [`Principal::Anonymous`] when
    /// authentication is off; UNAUTHENTICATED for missing, malformed or wrong credentials
    /// (the message never says whether the user exists).
    pub async fn authenticate(
        &self,
        authorization: Option<&str>,
    ) -> Result<Principal, BrokerError> {
        if !self.enabled {
            return Ok(Principal::Anonymous);
        }
        let Some(value) = authorization else {
            return Err(BrokerError::Unauthenticated(
                "this broker requires authentication: give a user and password, or a token".into(),
            ));
        };
        let presented = secret::parse_authorization(value).ok_or_else(|| {
            BrokerError::Unauthenticated(
                "malformed authorization: expected `Basic base64(USER:PASSWORD)` or \
                 `Bearer TOKEN`"
                    .into(),
            )
        })?;
        let state = self.snapshot();
        let digest = credential_digest(&self.cache_key, value);
        if let Some((user, generation)) = self.cached(&digest)
            && generation == state.generation
        {
            return Ok(Principal::User(user));
        }
        let user: Arc<str> = match presented {
            Presented::Token(token) => {
                let want = token_digest(token);
                let found = state.users.iter().find(|(_, u)| {
                    matches!(&u.credential, Credential::Token { sha256 } if *sha256 == want)
                });
                Arc::from(found.ok_or_else(invalid_credentials)?.0.as_str())
            }
            Presented::Password { user, password } => {
                let phc = match state.users.get(&user).map(|u| &u.credential) {
                    Some(Credential::Password { argon2 }) => Some(argon2.clone()),
                    _ => None,
                };
                let known = phc.is_some();
                let phc = phc.unwrap_or_else(|| decoy_hash().to_string());
                let _permit = self.verifying.acquire().await.map_err(storage)?;
                self.verifications
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let ok =
                    tokio::task::spawn_blocking(move || secret::verify_password(&phc, &password))
                        .await
                        .map_err(storage)?;
                if !(ok && known) {
                    return Err(invalid_credentials());
                }
                Arc::from(user)
            }
        };
        self.remember(digest, Arc::clone(&user), state.generation);
        Ok(Principal::User(user))
    }

    /// How many password hashes this broker has checked: one per password presented that
    /// was not in the cache, whether or not the user exists.
    pub fn password_verifications(&self) -> u64 {
        self.verifications
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    fn cached(&self, digest: &[u8; 32]) -> Option<Verified> {
        let cache = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        cache.get(digest).cloned()
    }

    fn remember(&self, digest: [u8; 32], user: Arc<str>, generation: u64) {
        let mut cache = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= MAX_VERIFIED_CREDENTIALS {
            cache.clear();
        }
        cache.insert(digest, (user, generation));
    }

    /// Ok if `who` may do `op` on `resource`, else PERMISSION_DENIED naming only what the
    /// caller asked for.
    pub fn authorize(
        &self,
        who: &Principal,
        resource: Resource<'_>,
        op: Operation,
    ) -> Result<(), BrokerError> {
        if !self.enabled {
            return Ok(());
        }
        match who {
            Principal::Member => Ok(()),
            Principal::User(user) if self.snapshot().allows(user, resource, op) => Ok(()),
            Principal::User(user) => Err(BrokerError::PermissionDenied(format!(
                "user {user:?} needs {} on {resource}",
                op.as_str()
            ))),
            Principal::Anonymous => Err(BrokerError::Unauthenticated(
                "this broker requires authentication".into(),
            )),
        }
    }

    /// Whether `who` holds any permission on `resource` (listings show only those).
    pub fn visible(&self, who: &Principal, resource: Resource<'_>) -> bool {
        match who {
            _ if !self.enabled => true,
            Principal::Member => true,
            Principal::User(user) => self.snapshot().touches(user, resource),
            Principal::Anonymous => false,
        }
    }

    /// Ok if `who` holds some permission on `resource` (describing it needs no more).
    pub fn require_visible(
        &self,
        who: &Principal,
        resource: Resource<'_>,
    ) -> Result<(), BrokerError> {
        if self.visible(who, resource) {
            return Ok(());
        }
        match who {
            Principal::User(user) => Err(BrokerError::PermissionDenied(format!(
                "user {user:?} has no permission on {resource}"
            ))),
            Principal::Anonymous | Principal::Member => Err(BrokerError::Unauthenticated(
                "this broker requires authentication".into(),
            )),
        }
    }

    /// Ok if `who` is a superuser (or authentication is off).
    pub fn require_superuser(&self, who: &Principal) -> Result<(), BrokerError> {
        if self.whoami(who).1 {
            return Ok(());
        }
        Err(BrokerError::PermissionDenied(match who {
            Principal::User(user) => format!("user {user:?} is not a superuser"),
            Principal::Anonymous | Principal::Member => "a superuser is required".into(),
        }))
    }

    /// (name, superuser) of `who`; ("", true) when authentication is off, and for another
    /// member.
    pub fn whoami(&self, who: &Principal) -> (String, bool) {
        match who {
            _ if !self.enabled => (String::new(), true),
            Principal::Member => (String::new(), true),
            Principal::User(user) => {
                let su = self
                    .snapshot()
                    .users
                    .get(&**user)
                    .is_some_and(|u| u.superuser);
                (user.to_string(), su)
            }
            Principal::Anonymous => (String::new(), false),
        }
    }

    /// Applies `change` to a copy of the state, stores it (standalone) or has the quorum
    /// replace the cluster's with it (cluster mode), and publishes it. In a cluster, a change
    /// overtaken by another member's is made again on the newer state.
    async fn change<T>(
        &self,
        change: impl Fn(&mut State) -> Result<T, BrokerError>,
    ) -> Result<T, BrokerError> {
        let _one = self.changes.lock().await;
        let deadline = tokio::time::Instant::now() + CHANGE_TIMEOUT;
        while tokio::time::Instant::now() < deadline {
            let Versioned { version, state } = self.versioned();
            let mut next = (*state).clone();
            let out = change(&mut next)?;
            if next.users.len() > MAX_USERS || next.acls.len() > MAX_ACLS {
                return Err(BrokerError::InvalidArgument(format!(
                    "at most {MAX_USERS} users and {MAX_ACLS} ACLs"
                )));
            }
            let next = Arc::new(next);
            let Some(propose) = self.cluster.get() else {
                let doc = serde_json::to_vec(&*next).map_err(storage)?;
                let store = self.store.clone();
                tokio::task::spawn_blocking(move || put_document(&store, &doc))
                    .await
                    .map_err(storage)?
                    .map_err(storage)?;
                self.publish(version + 1, next);
                return Ok(out);
            };
            match propose(version, Arc::clone(&next)).await? {
                Proposed::Taken => {
                    self.publish(version + 1, next);
                    return Ok(out);
                }
                Proposed::Stale { current } => self.catch_up(current).await,
            }
        }
        Err(BrokerError::ClusterUnavailable(
            "users and ACLs kept changing under this change; try again".into(),
        ))
    }

    /// Waits until this member serves the cluster's document at `version` (or a while).
    async fn catch_up(&self, version: u64) {
        let mut served = self.served.subscribe();
        let _ = tokio::time::timeout(CATCH_UP_TIMEOUT, served.wait_for(|v| *v >= version)).await;
    }

    /// Adds a user with `password`, or with a new token (returned) when there is none.
    pub async fn create_user(
        &self,
        name: &str,
        password: Option<String>,
        superuser: bool,
    ) -> Result<Option<String>, BrokerError> {
        let name = UserName::new(name)?;
        let (credential, token) = match password {
            Some(p) => {
                let chars = p.chars().count();
                if chars < MIN_PASSWORD_CHARS || p.len() > MAX_PASSWORD_BYTES {
                    return Err(BrokerError::InvalidArgument(format!(
                        "a password has {MIN_PASSWORD_CHARS} to {} characters",
                        MAX_PASSWORD_BYTES
                    )));
                }
                let _permit = self.verifying.acquire().await.map_err(storage)?;
                let argon2 = tokio::task::spawn_blocking(move || secret::hash_password(&p))
                    .await
                    .map_err(storage)?
                    .map_err(storage)?;
                (Credential::Password { argon2 }, None)
            }
            None => {
                let token = secret::new_token().map_err(storage)?;
                let sha256 = token_digest(&token);
                (Credential::Token { sha256 }, Some(token))
            }
        };
        self.change(|s| {
            if s.users.contains_key(name.as_str()) {
                return Err(BrokerError::UserExists(name.to_string()));
            }
            s.users.insert(
                name.to_string(),
                User {
                    credential: credential.clone(),
                    superuser,
                    created_ms: now_ms(),
                },
            );
            s.generation += 1;
            Ok(())
        })
        .await?;
        tracing::info!(user = %name, superuser, "user added");
        Ok(token)
    }

    /// Removes a user and its ACLs; returns how many ACLs went.
    pub async fn delete_user(&self, name: &str) -> Result<usize, BrokerError> {
        let removed = self
            .change(|s| {
                let user = s
                    .users
                    .get(name)
                    .ok_or_else(|| BrokerError::UserNotFound(name.to_string()))?;
                if user.superuser && s.superusers() == 1 {
                    return Err(BrokerError::LastSuperuser(name.to_string()));
                }
                s.users.remove(name);
                let before = s.acls.len();
                s.acls.retain(|a| a.principal != name);
                s.generation += 1;
                Ok(before - s.acls.len())
            })
            .await?;
        tracing::info!(user = name, acls_removed = removed, "user removed");
        Ok(removed)
    }

    pub fn list_users(&self) -> Vec<UserInfo> {
        self.snapshot()
            .users
            .iter()
            .map(|(name, u)| UserInfo {
                name: name.clone(),
                credential: match u.credential {
                    Credential::Password { .. } => "password",
                    Credential::Token { .. } => "token",
                },
                superuser: u.superuser,
                created_ms: u.created_ms,
            })
            .collect()
    }

    /// Grants `acl` (granting it again changes nothing).
    pub async fn grant(&self, acl: Acl) -> Result<(), BrokerError> {
        tracing::info!(?acl, "ACL granted");
        self.change(|s| {
            if acl.principal != acl::ANY_PRINCIPAL && !s.users.contains_key(&acl.principal) {
                return Err(BrokerError::UserNotFound(acl.principal.clone()));
            }
            s.acls.insert(acl.clone());
            Ok(())
        })
        .await
    }

    pub async fn revoke(&self, acl: &Acl) -> Result<(), BrokerError> {
        self.change(|s| {
            if s.acls.remove(acl) {
                Ok(())
            } else {
                Err(BrokerError::AclNotFound)
            }
        })
        .await?;
        tracing::info!(?acl, "ACL revoked");
        Ok(())
    }

    /// Every ACL, or `principal`'s only.
    pub fn list_acls(&self, principal: Option<&str>) -> Vec<Acl> {
        self.snapshot()
            .acls
            .iter()
            .filter(|a| principal.is_none_or(|p| a.principal == p))
            .cloned()
            .collect()
    }
}

/// Writes `content` to a new file at `path` that only its owner may read.
fn write_private(path: &Path, content: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options.open(path)?;
    writeln!(f, "{content}")?;
    f.sync_all()
}

/// Replaces the stored security document (standalone: `security` in [`Cf::Meta`]), fsynced: a
/// removed user or a revoked ACL stays so.
fn put_document(store: &Store, doc: &[u8]) -> Result<(), StorageError> {
    let mut set = store.write_set();
    set.put(Cf::Meta, SECURITY_KEY, doc);
    store.write(set, Durability::Synced)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(superuser: bool) -> User {
        User {
            credential: Credential::Token {
                sha256: String::new(),
            },
            superuser,
            created_ms: 0,
        }
    }

    /// A wrong user name is refused after the same work as a wrong password: one argon2id
    /// check with the same parameters (against a decoy hash), and the same answer, so neither
    /// the timing nor the message tells which users exist.
    #[tokio::test]
    async fn an_unknown_user_costs_one_password_check_like_a_wrong_password() {
        use argon2::password_hash::PasswordHash;
        use base64::Engine;
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(&tmp.path().join("db"), crate::storage::SyncMode::Never).unwrap();
        let security = Security::open(store, true, tmp.path(), false).unwrap();
        security
            .create_user("alice", Some("alice-password".into()), false)
            .await
            .unwrap();
        let basic = |user: &str, password: &str| {
            let pair = format!("{user}:{password}");
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            )
        };
        let before = security.password_verifications();
        let wrong = security
            .authenticate(Some(&basic("alice", "not-her-password")))
            .await
            .unwrap_err();
        assert_eq!(security.password_verifications(), before + 1);
        let unknown = security
            .authenticate(Some(&basic("mallory", "not-her-password")))
            .await
            .unwrap_err();
        assert_eq!(security.password_verifications(), before + 2);
        assert_eq!(wrong.to_string(), unknown.to_string());
        assert!(matches!(unknown, BrokerError::Unauthenticated(_)));

        // The decoy costs what a stored hash costs: same algorithm, memory, passes, lanes
        // and output length.
        let state = security.snapshot();
        let Credential::Password { argon2: stored } = &state.users["alice"].credential else {
            panic!("alice has a password");
        };
        let (real, decoy) = (
            PasswordHash::new(stored).unwrap(),
            PasswordHash::new(decoy_hash()).expect("the decoy is a PHC string"),
        );
        assert_eq!(real.algorithm, decoy.algorithm);
        assert_eq!(real.version, decoy.version);
        assert_eq!(real.params, decoy.params);
        assert_eq!(real.hash.map(|h| h.len()), decoy.hash.map(|h| h.len()));
        // The right password still works (and is then cached: no second check).
        let right = basic("alice", "alice-password");
        security.authenticate(Some(&right)).await.unwrap();
        security.authenticate(Some(&right)).await.unwrap();
        assert_eq!(security.password_verifications(), before + 3);
    }

    #[test]
    fn superusers_may_do_anything_others_what_their_acls_grant() {
        let mut s = State::default();
        s.users.insert("root".into(), user(true));
        s.users.insert("alice".into(), user(false));
        s.acls
            .insert(Acl::new("alice", "topic", "orders", "write").unwrap());
        s.acls
            .insert(Acl::new("*", "topic", "public.*", "read").unwrap());
        let orders = Resource::topic("orders");
        assert!(s.allows("root", orders, Operation::Admin));
        assert!(s.allows("alice", orders, Operation::Write));
        assert!(!s.allows("alice", orders, Operation::Read));
        assert!(s.allows("alice", Resource::topic("public.x"), Operation::Read));
        // An ACL for `*` covers users only: a removed user (or a made-up name) gets nothing.
        assert!(!s.allows("ghost", Resource::topic("public.x"), Operation::Read));
        assert!(s.touches("alice", orders));
        assert!(!s.touches("alice", Resource::topic("payments")));
        assert!(s.touches("root", Resource::topic("payments")));
    }
}
