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

use nadi_security::acl::{Acl, Permission, Resource};
use nadi_security::auth::{AuthMode, Authenticator, Identity};
use parking_lot::RwLock;
use tonic::{Request, Status};

use crate::error::StoreError;

/// This store's authentication and its copy of the grants.
#[derive(Debug, Clone)]
pub struct Access {
    auth: Arc<Authenticator>,
    acl: Arc<RwLock<Acl>>,
}

impl Default for Access {
    /// Open: no authentication (tests and embedded stores).
    fn default() -> Access {
        Access::new(Arc::new(Authenticator::open()))
    }
}

impl Access {
    pub fn new(auth: Arc<Authenticator>) -> Access {
        Access { auth, acl: Arc::default() }
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

    /// The caller of `req` may do `needed` to `segment`'s stream.
    pub fn require_on_segment<T>(&self, req: &Request<T>, segment: &str, needed: Permission) -> Result<(), Status> {
        let who = self.caller(req)?;
        if who.superuser {
            return Ok(());
        }
        let stream = stream_of(segment)?;
        if self.allows(&who, &stream, needed) {
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
