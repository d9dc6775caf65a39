//! Who may call what on a segment store (docs/security.md).
//!
//! The auth layer in front of the store's gRPC server has put the caller's identity in each
//! request's extensions. A segment's name starts with its scope and stream, so appends need
//! write on that stream and reads need read on it; creating, sealing, truncating, merging and
//! deleting segments are the controllers' work and need a superuser (a node). The grants are
//! the controllers' (their replicated state); this store keeps the copy its heartbeats bring
//! ([`Access::update`]), so a grant or a revocation takes effect here within a heartbeat
//! (about 2 s).
//!
//! Owns: [`Access`]. Calls: `nadi_security`. Called by: [`super::service`], `node` (which
//! feeds it the grants from the heartbeats).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;

use nadi_security::acl::{Acl, Permission, Resource};
use nadi_security::auth::{AuthMode, Authenticator, Identity};
use parking_lot::RwLock;
use tonic::{Request, Status};

use crate::error::StoreError;

/// Asks the controllers for the grants when the copy held (this version) may be stale:
/// `Some((version, json))` (json empty when unchanged), or `None` if no controller answered.
pub type Refresh = Arc<dyn Fn(u64) -> BoxFuture<'static, Option<(u64, bytes::Bytes)>> + Send + Sync>;

/// Refreshing the grants on a refusal happens at most this often (a caller that keeps being
/// refused must not turn every call into a call to the controllers).
const REFRESH_AT_MOST_EVERY: Duration = Duration::from_millis(250);

/// This store's authentication and its copy of the grants.
#[derive(Clone)]
pub struct Access {
    auth: Arc<Authenticator>,
    acl: Arc<RwLock<Acl>>,
    refresh: Arc<RwLock<Option<Refresh>>>,
    /// When the grants were last fetched on a refusal (one fetch at a time).
    refreshed: Arc<tokio::sync::Mutex<Option<Instant>>>,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access").field("auth", &self.auth).field("acl_version", &self.acl_version()).finish()
    }
}

impl Default for Access {
    /// Open: no authentication (tests and embedded stores).
    fn default() -> Access {
        Access::new(Arc::new(Authenticator::open()))
    }
}

impl Access {
    pub fn new(auth: Arc<Authenticator>) -> Access {
        Access { auth, acl: Arc::default(), refresh: Arc::default(), refreshed: Arc::default() }
    }

    /// How to fetch the grants when a call is about to be refused (a grant made a moment ago
    /// must count at once, not after the next heartbeat).
    pub fn set_refresh(&self, refresh: Refresh) {
        *self.refresh.write() = Some(refresh);
    }

    /// Fetches the grants if no fetch happened in the last [`REFRESH_AT_MOST_EVERY`].
    async fn refresh_now(&self) {
        let Some(refresh) = self.refresh.read().clone() else { return };
        let mut last = self.refreshed.lock().await;
        if last.is_some_and(|t| t.elapsed() < REFRESH_AT_MOST_EVERY) {
            return;
        }
        if let Some((version, json)) = refresh(self.acl_version()).await {
            self.update(version, &json);
        }
        *last = Some(Instant::now());
    }

    /// The version of the grants this store holds (sent with each heartbeat).
    pub fn acl_version(&self) -> u64 {
        self.acl.read().version()
    }

    /// Takes the controllers' grants from a heartbeat's answer (`json` empty: unchanged).
    pub fn update(&self, version: u64, json: &[u8]) {
        if json.is_empty() || version == self.acl_version() {
            return;
        }
        match serde_json::from_slice::<Acl>(json) {
            Ok(acl) => *self.acl.write() = acl,
            Err(e) => tracing::warn!(error = %e, "the controllers sent grants this store cannot read; keeping the old"),
        }
    }

    /// The authenticator (for the ops HTTP listener's `/metrics`).
    pub fn authenticator(&self) -> &Arc<Authenticator> {
        &self.auth
    }

    /// The caller of `req`.
    pub fn caller<T>(&self, req: &Request<T>) -> Result<Identity, Status> {
        match req.extensions().get::<Identity>() {
            Some(id) => Ok(id.clone()),
            None if self.auth.mode() == AuthMode::None => Ok(Identity::anyone()),
            None => Err(StoreError::Unauthenticated("this call carries no identity (no bearer token)".into()).into()),
        }
    }

    /// Whether `who` holds `needed` on `resource` (for checks made away from the request).
    pub fn allows(&self, who: &Identity, resource: &Resource, needed: Permission) -> bool {
        self.acl.read().allows(who, resource, needed)
    }

    /// `who` may do `needed` to `segment`'s stream. Before refusing, the grants are fetched
    /// from the controllers once (they may have changed since the last heartbeat).
    pub async fn require_on_segment(&self, who: &Identity, segment: &str, needed: Permission) -> Result<(), Status> {
        if who.superuser {
            return Ok(());
        }
        let stream = stream_of(segment)?;
        if self.allows(who, &stream, needed) {
            return Ok(());
        }
        self.refresh_now().await;
        if self.allows(who, &stream, needed) {
            Ok(())
        } else {
            Err(StoreError::PermissionDenied(format!("{} lacks {needed} on {stream}", who.principal)).into())
        }
    }

    /// The caller of `req` is a superuser (a node): the controllers' segment operations.
    pub fn require_superuser<T>(&self, req: &Request<T>, what: &str) -> Result<(), Status> {
        let who = self.caller(req)?;
        if who.superuser {
            Ok(())
        } else {
            Err(StoreError::PermissionDenied(format!(
                "{} may not {what}: only nodes and superusers may",
                who.principal
            ))
            .into())
        }
    }
}

/// The stream a segment name belongs to (`scope/stream/...`).
fn stream_of(segment: &str) -> Result<Resource, Status> {
    let mut parts = segment.splitn(3, '/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(scope), Some(stream), Some(_)) if !scope.is_empty() && !stream.is_empty() => {
            Ok(Resource::stream(scope, stream))
        }
        _ => {
            Err(StoreError::InvalidArgument(format!("{segment:?} is not a segment name (scope/stream/number)")).into())
        }
    }
}
