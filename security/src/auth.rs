//! Authentication: which principal a call comes from.
//!
//! A call carries `authorization: Bearer <token>` (gRPC metadata or an HTTP header). Two
//! sources can vouch for a token:
//!
//! - a **token file** (`--token-file`, TOML) of argon2 hashes, each naming its principal.
//!   `nadi auth token PRINCIPAL` makes a random token and its entry. An entry's `id` is the
//!   first 8 hex digits of the token's SHA-256: it finds the entry without trying every hash
//!   (and costs an attacker nothing: the token is 256 random bits). The file is re-read when
//!   it changes (checked at most once a second), so tokens are added and revoked without a
//!   restart;
//! - **JWTs** verified against `--jwt-key` (a PEM public key, or an HS256 secret): `sub` is the
//!   principal, `exp` is required, `iss` is checked when `--jwt-issuer` is set.
//!
//! Verifying an argon2 hash is slow on purpose (tens of milliseconds), so results are cached
//! by the token's SHA-256: a success for at most 60 s (and never past a JWT's `exp`), a
//! failure for 10 s. A changed token file empties the cache. Verification runs on a blocking
//! thread, never on a runtime worker.
//!
//! Owns: [`AuthMode`], [`Identity`], [`Authenticator`], [`AuthError`], the token file format
//! ([`TokenEntry`], [`new_token`]), and [`AuthLayer`] (the tower layer that authenticates
//! every gRPC call on a server and puts the caller's [`Identity`] in the request's
//! extensions). Called by: the controller's and segment store's servers, `nadi auth`.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Whether calls must carry a valid bearer token (`--auth`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AuthMode {
    /// No authentication: every caller may do everything.
    #[default]
    None,
    /// Every call needs a valid token and the permission for what it does.
    Required,
}

impl FromStr for AuthMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(AuthMode::None),
            "required" => Ok(AuthMode::Required),
            _ => Err(format!("{s:?} is not an auth mode (none, required)")),
        }
    }
}

impl fmt::Display for AuthMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AuthMode::None => "none",
            AuthMode::Required => "required",
        })
    }
}

impl serde::Serialize for AuthMode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Who a call comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    /// The principal grants name.
    pub principal: String,
    /// May do everything: a `--superusers` principal, or a node (a TLS client certificate
    /// from the cluster's CA).
    pub superuser: bool,
}

impl Identity {
    /// Everyone, when authentication is off.
    pub fn anyone() -> Identity {
        Identity { principal: "*".into(), superuser: true }
    }

    /// A node of the cluster, known by its TLS client certificate's subject.
    pub fn node(subject: &str) -> Identity {
        Identity { principal: format!("node:{subject}"), superuser: true }
    }
}

/// A connection that presented a TLS client certificate the server verified against its CA:
/// put in a request's extensions by the TLS listener, read by [`AuthLayer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedClientCertificate {
    /// The certificate's subject (or its first DNS name).
    pub subject: String,
}

/// Why a call is not authenticated. Each maps to gRPC Unauthenticated / HTTP 401.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    #[error("this server requires a bearer token (give one with --token or NADI_TOKEN)")]
    Missing,
    #[error("the authorization header is not `Bearer <token>`")]
    Malformed,
    #[error("the token is not known to this server")]
    Unknown,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid: {0}")]
    Invalid(String),
}

/// Why the authentication settings cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthSetupError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("token file {path}: {reason}")]
    TokenFile { path: PathBuf, reason: String },
    #[error("JWT key {path}: {reason}")]
    JwtKey { path: PathBuf, reason: String },
    #[error("--auth required needs a way to check tokens: give --token-file or --jwt-key")]
    NoSource,
    #[error("superuser {0:?}: not a principal name")]
    BadSuperuser(String),
}

/// What [`Authenticator::new`] is built from (the `--auth`, `--token-file`, `--jwt-key`,
/// `--jwt-issuer`, `--superusers` settings).
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    pub mode: AuthMode,
    pub token_file: Option<PathBuf>,
    pub jwt_key: Option<PathBuf>,
    pub jwt_issuer: Option<String>,
    pub superusers: Vec<String>,
}

/// One entry of a token file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenEntry {
    /// Who the token is.
    pub principal: String,
    /// The first 8 hex digits of the token's SHA-256 (optional: without it every entry's
    /// hash is tried).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The token's argon2 hash (PHC string).
    pub hash: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct TokenFileToml {
    #[serde(default)]
    token: Vec<TokenEntry>,
}

/// Checks a principal name: what a token file, a JWT `sub`, a superuser or a grant may name
/// (1 to 256 visible ASCII characters, no spaces).
pub fn check_principal(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 256 || !name.chars().all(|c| c.is_ascii_graphic()) {
        return Err(format!("a principal name must be 1 to 256 visible characters without spaces, not {name:?}"));
    }
    Ok(())
}

/// A new random token for `principal` and its token-file entry.
pub fn new_token(principal: &str) -> Result<(String, TokenEntry), String> {
    check_principal(principal)?;
    let secret: [u8; 32] = rand::random();
    let token = format!("nadi_{}", hex(&secret));
    let entry = hash_token(principal, &token)?;
    Ok((token, entry))
}

/// The token-file entry naming `principal` for an existing `token`.
pub fn hash_token(principal: &str, token: &str) -> Result<TokenEntry, String> {
    check_principal(principal)?;
    let salt_bytes: [u8; 16] = rand::random();
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| e.to_string())?;
    let hash = Argon2::default().hash_password(token.as_bytes(), &salt).map_err(|e| e.to_string())?.to_string();
    Ok(TokenEntry { principal: principal.to_owned(), id: Some(token_id(token)), hash })
}

/// An entry rendered as a `[[token]]` table of a token file.
pub fn entry_toml(entry: &TokenEntry) -> String {
    let file = TokenFileToml { token: vec![entry.clone()] };
    toml::to_string(&file).unwrap_or_default()
}

fn token_id(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes())[..4])
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A file whose changes are noticed: its modification time, looked at at most once a second.
#[derive(Debug)]
struct Watched {
    path: PathBuf,
    modified: Option<SystemTime>,
    checked: Instant,
}

impl Watched {
    fn new(path: &Path) -> Watched {
        Watched { path: path.to_owned(), modified: mtime(path), checked: Instant::now() }
    }

    /// True once each time the file's modification time changes (so a new file that cannot
    /// be used is not read again until it changes again).
    fn changed(&mut self) -> bool {
        if self.checked.elapsed() < Duration::from_secs(1) {
            return false;
        }
        self.checked = Instant::now();
        let modified = mtime(&self.path);
        if modified == self.modified {
            return false;
        }
        self.modified = modified;
        true
    }
}

fn mtime(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The token file as last read.
#[derive(Debug)]
struct TokenFile {
    file: Watched,
    entries: Vec<TokenEntry>,
}

impl TokenFile {
    fn load(path: &Path) -> Result<TokenFile, AuthSetupError> {
        let file = Watched::new(path);
        Ok(TokenFile { file, entries: TokenFile::read(path)? })
    }

    fn read(path: &Path) -> Result<Vec<TokenEntry>, AuthSetupError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| AuthSetupError::Read { path: path.to_owned(), source })?;
        let parsed: TokenFileToml = toml::from_str(&text)
            .map_err(|e| AuthSetupError::TokenFile { path: path.to_owned(), reason: e.to_string() })?;
        for e in &parsed.token {
            check_principal(&e.principal)
                .map_err(|reason| AuthSetupError::TokenFile { path: path.to_owned(), reason })?;
            PasswordHash::new(&e.hash).map_err(|err| AuthSetupError::TokenFile {
                path: path.to_owned(),
                reason: format!("the hash of {:?} is not a PHC string: {err}", e.principal),
            })?;
        }
        Ok(parsed.token)
    }

    /// Re-reads the file if it changed; true if it did. A file that no longer parses keeps
    /// the entries read before (and says so in the log).
    fn refresh(&mut self) -> bool {
        if !self.file.changed() {
            return false;
        }
        match TokenFile::read(&self.file.path) {
            Ok(entries) => {
                tracing::info!(path = %self.file.path.display(), tokens = entries.len(), "token file re-read");
                self.entries = entries;
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "the token file changed but cannot be used; keeping the tokens read before");
                false
            }
        }
    }
}

/// Verifies JWTs against one key, re-read when its file changes (checked at most once a
/// second), so a key is rotated without a restart.
struct Jwt {
    key: jsonwebtoken::DecodingKey,
    validation: jsonwebtoken::Validation,
    file: Watched,
    issuer: Option<String>,
}

impl fmt::Debug for Jwt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jwt").field("algorithms", &self.validation.algorithms).finish_non_exhaustive()
    }
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
}

impl Jwt {
    fn load(path: &Path, issuer: Option<&str>) -> Result<Jwt, AuthSetupError> {
        use jsonwebtoken::{Algorithm, DecodingKey};
        let file = Watched::new(path);
        let bytes = std::fs::read(path).map_err(|source| AuthSetupError::Read { path: path.to_owned(), source })?;
        let bad = |reason: String| AuthSetupError::JwtKey { path: path.to_owned(), reason };
        let (key, algorithms) = if bytes.starts_with(b"-----BEGIN") {
            if let Ok(k) = DecodingKey::from_rsa_pem(&bytes) {
                (k, vec![Algorithm::RS256, Algorithm::RS384, Algorithm::RS512, Algorithm::PS256])
            } else if let Ok(k) = DecodingKey::from_ec_pem(&bytes) {
                (k, vec![Algorithm::ES256, Algorithm::ES384])
            } else if let Ok(k) = DecodingKey::from_ed_pem(&bytes) {
                (k, vec![Algorithm::EdDSA])
            } else {
                return Err(bad("a PEM file that is not an RSA, EC or Ed25519 public key".into()));
            }
        } else {
            let secret = bytes.trim_ascii();
            if secret.len() < 32 {
                return Err(bad(format!("an HS256 secret must be at least 32 bytes, this one has {}", secret.len())));
            }
            let key = DecodingKey::from_secret(secret).map_err(|e| bad(e.to_string()))?;
            (key, vec![Algorithm::HS256, Algorithm::HS384, Algorithm::HS512])
        };
        let mut validation = jsonwebtoken::Validation::new(algorithms[0]);
        validation.algorithms = algorithms;
        validation.leeway = 5;
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp", "sub"]);
        if let Some(iss) = issuer {
            validation.set_issuer(&[iss]);
        }
        Ok(Jwt { key, validation, file, issuer: issuer.map(str::to_owned) })
    }

    /// Re-reads the key if its file changed; true if it did. A bad new key keeps the old one.
    fn refresh(&mut self) -> bool {
        if !self.file.changed() {
            return false;
        }
        match Jwt::load(&self.file.path, self.issuer.as_deref()) {
            Ok(new) => {
                tracing::info!(path = %self.file.path.display(), "JWT key re-read");
                *self = new;
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "the JWT key changed but cannot be used; keeping the key read before");
                false
            }
        }
    }

    fn verify(&self, token: &str) -> Result<(String, u64), AuthError> {
        use jsonwebtoken::errors::ErrorKind;
        match jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation) {
            Ok(data) => Ok((data.claims.sub, data.claims.exp)),
            Err(e) => Err(match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                _ => AuthError::Invalid(e.to_string()),
            }),
        }
    }
}

/// A cached outcome of verifying one token.
#[derive(Debug, Clone)]
struct Cached {
    outcome: Result<Identity, AuthError>,
    until: Instant,
}

const CACHE_OK_FOR: Duration = Duration::from_secs(60);
const CACHE_FAILED_FOR: Duration = Duration::from_secs(10);
const CACHE_ENTRIES: usize = 10_000;

/// Turns bearer tokens into identities. One per server process, shared by its listeners.
#[derive(Debug)]
pub struct Authenticator {
    mode: AuthMode,
    tokens: Option<Mutex<TokenFile>>,
    jwt: Option<Mutex<Jwt>>,
    superusers: Vec<String>,
    /// The SHA-256 of a token this process made for its own parts (standalone's store calling
    /// its controller): it names a node.
    own_token: Option<[u8; 32]>,
    cache: Mutex<HashMap<[u8; 32], Cached>>,
}

impl Authenticator {
    /// Accepts `token` as a node's (a superuser's). For a process whose parts call each other
    /// (`nadi standalone`): it makes a random token and gives it to them.
    pub fn with_own_token(mut self, token: &str) -> Authenticator {
        self.own_token = Some(Sha256::digest(token.as_bytes()).into());
        self
    }

    /// Reads the token file and the JWT key. With `--auth required` at least one of them must
    /// be given.
    pub fn new(cfg: &AuthConfig) -> Result<Authenticator, AuthSetupError> {
        let tokens = cfg.token_file.as_deref().map(TokenFile::load).transpose()?.map(Mutex::new);
        let jwt = cfg.jwt_key.as_deref().map(|p| Jwt::load(p, cfg.jwt_issuer.as_deref())).transpose()?.map(Mutex::new);
        if cfg.mode == AuthMode::Required && tokens.is_none() && jwt.is_none() {
            return Err(AuthSetupError::NoSource);
        }
        for s in &cfg.superusers {
            check_principal(s).map_err(|_| AuthSetupError::BadSuperuser(s.clone()))?;
        }
        Ok(Authenticator {
            mode: cfg.mode,
            tokens,
            jwt,
            superusers: cfg.superusers.clone(),
            own_token: None,
            cache: Mutex::default(),
        })
    }

    /// No authentication: every call is [`Identity::anyone`].
    pub fn open() -> Authenticator {
        Authenticator {
            mode: AuthMode::None,
            tokens: None,
            jwt: None,
            superusers: Vec::new(),
            own_token: None,
            cache: Mutex::default(),
        }
    }

    pub fn mode(&self) -> AuthMode {
        self.mode
    }

    /// Who a call with this `authorization` header value is. With `--auth none`, anyone.
    pub async fn authenticate(self: &Arc<Self>, header: Option<&http::HeaderValue>) -> Result<Identity, AuthError> {
        if self.mode == AuthMode::None {
            return Ok(Identity::anyone());
        }
        let token = bearer(header)?;
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if self.own_token == Some(key) {
            return Ok(Identity::node("self"));
        }
        let tokens_changed = self.tokens.as_ref().is_some_and(|t| t.lock().refresh());
        let key_changed = self.jwt.as_ref().is_some_and(|j| j.lock().refresh());
        if tokens_changed || key_changed {
            self.cache.lock().clear();
        }
        if let Some(c) = self.cache.lock().get(&key)
            && c.until > Instant::now()
        {
            return c.outcome.clone();
        }
        let this = self.clone();
        let token = token.to_owned();
        let (outcome, valid_for) = tokio::task::spawn_blocking(move || this.verify(&token))
            .await
            .unwrap_or_else(|e| (Err(AuthError::Invalid(format!("verification failed: {e}"))), Duration::ZERO));
        let mut cache = self.cache.lock();
        if cache.len() >= CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(key, Cached { outcome: outcome.clone(), until: Instant::now() + valid_for });
        outcome
    }

    /// Verifies `token` (blocking: argon2) and says for how long the outcome may be cached.
    fn verify(&self, token: &str) -> (Result<Identity, AuthError>, Duration) {
        let looks_like_jwt = token.split('.').count() == 3 && token.starts_with("eyJ");
        let principal = if looks_like_jwt {
            let Some(jwt) = &self.jwt else {
                return (Err(AuthError::Invalid("this server does not accept JWTs".into())), CACHE_FAILED_FOR);
            };
            let verified = jwt.lock().verify(token);
            match verified {
                Ok((sub, exp)) => {
                    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs();
                    if let Err(e) = check_principal(&sub) {
                        return (Err(AuthError::Invalid(format!("sub: {e}"))), CACHE_FAILED_FOR);
                    }
                    return (Ok(self.identity(sub)), CACHE_OK_FOR.min(Duration::from_secs(exp.saturating_sub(now))));
                }
                Err(e) => return (Err(e), CACHE_FAILED_FOR),
            }
        } else {
            self.check_token_file(token)
        };
        match principal {
            Some(p) => (Ok(self.identity(p)), CACHE_OK_FOR),
            None => (Err(AuthError::Unknown), CACHE_FAILED_FOR),
        }
    }

    fn check_token_file(&self, token: &str) -> Option<String> {
        let tokens = self.tokens.as_ref()?;
        let id = token_id(token);
        let candidates: Vec<TokenEntry> =
            tokens.lock().entries.iter().filter(|e| e.id.as_deref().is_none_or(|i| i == id)).cloned().collect();
        candidates.into_iter().find_map(|e| {
            let hash = PasswordHash::new(&e.hash).ok()?;
            Argon2::default().verify_password(token.as_bytes(), &hash).ok().map(|()| e.principal)
        })
    }

    fn identity(&self, principal: String) -> Identity {
        let superuser = self.superusers.contains(&principal);
        Identity { principal, superuser }
    }
}

/// The token in `authorization: Bearer <token>`.
fn bearer(header: Option<&http::HeaderValue>) -> Result<&str, AuthError> {
    let value = header.ok_or(AuthError::Missing)?.to_str().map_err(|_| AuthError::Malformed)?;
    let (scheme, token) = value.split_once(' ').ok_or(AuthError::Malformed)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(AuthError::Malformed);
    }
    Ok(token.trim())
}

/// The status a refused call gets.
pub fn unauthenticated(e: &AuthError) -> tonic::Status {
    typed(nadi_proto::errors::ErrorCode::Unauthenticated, e.to_string())
}

/// A status with Nadi's error details (`UNAUTHENTICATED`, `PERMISSION_DENIED`), so every
/// client reads the reason the same way, whichever layer refused the call.
pub fn typed(code: nadi_proto::errors::ErrorCode, message: String) -> tonic::Status {
    nadi_proto::errors::to_status(code, message, Default::default())
}

/// A tower layer for a gRPC server: authenticates every call (by its bearer token, else its
/// TLS client certificate) and puts the caller's [`Identity`] in the request's extensions;
/// refuses a call that fails with Unauthenticated before it reaches the service. With
/// `--auth none` every call is [`Identity::anyone`].
#[derive(Debug, Clone)]
pub struct AuthLayer {
    auth: Arc<Authenticator>,
}

impl AuthLayer {
    pub fn new(auth: Arc<Authenticator>) -> AuthLayer {
        AuthLayer { auth }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = AuthService<S>;
    fn layer(&self, inner: S) -> AuthService<S> {
        AuthService { inner, auth: self.auth.clone() }
    }
}

/// The service [`AuthLayer`] builds.
#[derive(Debug, Clone)]
pub struct AuthService<S> {
    inner: S,
    auth: Arc<Authenticator>,
}

type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S, B> tower::Service<http::Request<B>> for AuthService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send,
    B: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        // The service that was made ready is the one to call; leave a fresh clone behind.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let auth = self.auth.clone();
        Box::pin(async move {
            // A token, when there is one, says who the caller is: a controller forwarding a
            // client's call to its leader presents its own certificate but passes on the
            // client's token, and the call must keep the client's permissions.
            let header = req.headers().get(http::header::AUTHORIZATION);
            let identity = match (header, req.extensions().get::<VerifiedClientCertificate>()) {
                (None, Some(cert)) if auth.mode() == AuthMode::Required => Ok(Identity::node(&cert.subject)),
                _ => auth.authenticate(header).await,
            };
            match identity {
                Ok(id) => {
                    req.extensions_mut().insert(id);
                    inner.call(req).await
                }
                Err(e) => Ok(unauthenticated(&e).into_http()),
            }
        })
    }
}

/// The caller of a gRPC request, as [`AuthLayer`] found it. A request that did not pass
/// through the layer (an in-process call, a test) is [`Identity::anyone`] only if `auth` is
/// off; with auth on it is refused.
pub fn caller<T>(req: &tonic::Request<T>, auth: &Authenticator) -> Result<Identity, tonic::Status> {
    match req.extensions().get::<Identity>() {
        Some(id) => Ok(id.clone()),
        None if auth.mode() == AuthMode::None => Ok(Identity::anyone()),
        None => Err(unauthenticated(&AuthError::Missing)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(token: &str) -> http::HeaderValue {
        http::HeaderValue::from_str(&format!("Bearer {token}")).unwrap()
    }

    #[tokio::test]
    async fn token_file_tokens_name_their_principals_and_nothing_else_passes() {
        let dir = tempfile::tempdir().unwrap();
        let (alice, entry) = new_token("alice").unwrap();
        let (bob, bob_entry) = new_token("bob").unwrap();
        let path = dir.path().join("tokens.toml");
        std::fs::write(&path, entry_toml(&entry) + &entry_toml(&bob_entry)).unwrap();
        let auth = Arc::new(
            Authenticator::new(&AuthConfig {
                mode: AuthMode::Required,
                token_file: Some(path.clone()),
                superusers: vec!["bob".into()],
                ..Default::default()
            })
            .unwrap(),
        );
        let a = auth.authenticate(Some(&header(&alice))).await.unwrap();
        assert_eq!(a, Identity { principal: "alice".into(), superuser: false });
        assert!(auth.authenticate(Some(&header(&bob))).await.unwrap().superuser);
        assert_eq!(auth.authenticate(None).await, Err(AuthError::Missing));
        assert_eq!(auth.authenticate(Some(&header("nadi_00"))).await, Err(AuthError::Unknown));
        let basic = http::HeaderValue::from_static("Basic YWxpY2U6eA==");
        assert_eq!(auth.authenticate(Some(&basic)).await, Err(AuthError::Malformed));
        // Revoking: a rewritten file drops alice, and her cached success goes with it.
        std::thread::sleep(Duration::from_millis(1100));
        std::fs::write(&path, entry_toml(&bob_entry)).unwrap();
        let later = std::time::SystemTime::now() + Duration::from_secs(5);
        std::fs::File::options().write(true).open(&path).unwrap().set_modified(later).unwrap();
        assert_eq!(auth.authenticate(Some(&header(&alice))).await, Err(AuthError::Unknown));
    }

    #[tokio::test]
    async fn jwts_are_checked_for_signature_expiry_and_issuer() {
        use jsonwebtoken::{EncodingKey, Header, encode};
        let dir = tempfile::tempdir().unwrap();
        let secret = b"0123456789abcdef0123456789abcdef";
        let key = dir.path().join("jwt.key");
        std::fs::write(&key, secret).unwrap();
        let auth = Arc::new(
            Authenticator::new(&AuthConfig {
                mode: AuthMode::Required,
                jwt_key: Some(key),
                jwt_issuer: Some("nadi-test".into()),
                ..Default::default()
            })
            .unwrap(),
        );
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
        let sign = |claims: serde_json::Value, s: &[u8]| {
            encode(&Header::default(), &claims, &EncodingKey::from_secret(s).unwrap()).unwrap()
        };
        let ok = sign(serde_json::json!({"sub": "carol", "exp": now + 600, "iss": "nadi-test"}), secret);
        assert_eq!(auth.authenticate(Some(&header(&ok))).await.unwrap().principal, "carol");
        let expired = sign(serde_json::json!({"sub": "carol", "exp": now - 600, "iss": "nadi-test"}), secret);
        assert_eq!(auth.authenticate(Some(&header(&expired))).await, Err(AuthError::Expired));
        let forged = sign(serde_json::json!({"sub": "carol", "exp": now + 600, "iss": "nadi-test"}), &[7; 32]);
        assert!(matches!(auth.authenticate(Some(&header(&forged))).await, Err(AuthError::Invalid(_))));
        let other_issuer = sign(serde_json::json!({"sub": "carol", "exp": now + 600, "iss": "else"}), secret);
        assert!(matches!(auth.authenticate(Some(&header(&other_issuer))).await, Err(AuthError::Invalid(_))));
        // Rotation: a new key file takes over without a restart; the old key's tokens stop.
        let new_secret = b"fedcba9876543210fedcba9876543210";
        std::thread::sleep(Duration::from_millis(1100));
        let key = dir.path().join("jwt.key");
        std::fs::write(&key, new_secret).unwrap();
        let later = SystemTime::now() + Duration::from_secs(5);
        std::fs::File::options().write(true).open(&key).unwrap().set_modified(later).unwrap();
        assert!(matches!(auth.authenticate(Some(&header(&ok))).await, Err(AuthError::Invalid(_))));
        let fresh = sign(serde_json::json!({"sub": "dave", "exp": now + 600, "iss": "nadi-test"}), new_secret);
        assert_eq!(auth.authenticate(Some(&header(&fresh))).await.unwrap().principal, "dave");
    }

    #[test]
    fn required_auth_needs_a_token_source() {
        let e = Authenticator::new(&AuthConfig { mode: AuthMode::Required, ..Default::default() }).unwrap_err();
        assert!(matches!(e, AuthSetupError::NoSource));
    }
}
