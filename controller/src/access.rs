//! Who may call what: the permission each controller call needs (docs/security.md).
//!
//! The auth layer in front of every gRPC service (`nadi_security::auth::AuthLayer`) has put
//! the caller's [`Identity`] in the request's extensions; the services call [`require`] with
//! the resource and permission the call needs, against the grants in the replicated state. A
//! request without an identity is refused when this node requires tokens (a service reached
//! without the layer must not be open), and is anyone otherwise.
//!
//! | call | needs |
//! | --- | --- |
//! | create scope | admin on the cluster |
//! | delete scope | admin on the scope |
//! | list scopes, list streams, list reader groups | shows what the caller has any grant on |
//! | create stream | write on the scope |
//! | get stream, segments, successors, stream cut, history, transactions' state | read on the stream |
//! | seal, delete, truncate, update, scale a stream | admin on the stream |
//! | begin, ping, commit, abort a transaction | write on the stream |
//! | create reader group | read on the group and on each of its streams |
//! | reader-group membership, positions, checkpoints, reset | read on the group |
//! | delete reader group | admin on the group |
//! | cluster info | read on the cluster |
//! | grant, revoke | admin on the grant's resource |
//! | heartbeats, Raft | a superuser (a node) |
//!
//! Owns: [`caller`], [`require`], [`require_superuser`]. Called by: `service`,
//! `txn_service`, `reader_group_service`, `registry`, `raft`.

use nadi_security::acl::{Permission, Resource};
use nadi_security::auth::Identity;
use tonic::{Request, Status};

use crate::error::MetaError;
use crate::meta::MetaStore;

/// The caller of `req`.
pub fn caller<T>(meta: &MetaStore, req: &Request<T>) -> Result<Identity, Status> {
    match req.extensions().get::<Identity>() {
        Some(id) => Ok(id.clone()),
        None if !meta.auth_required() => Ok(Identity::anyone()),
        None => Err(MetaError::Unauthenticated("this call carries no identity (no bearer token)".into()).into()),
    }
}

/// The caller of `req`, if it holds `needed` on `resource`; else PermissionDenied naming both.
pub fn require<T>(
    meta: &MetaStore,
    req: &Request<T>,
    resource: &Resource,
    needed: Permission,
) -> Result<Identity, Status> {
    let who = caller(meta, req)?;
    if meta.read_acl(|acl| acl.allows(&who, resource, needed)) {
        Ok(who)
    } else {
        Err(denied(&who, resource, needed).into())
    }
}

/// The caller of `req`, if it is a superuser (a node, or a `--superusers` principal).
pub fn require_superuser<T>(meta: &MetaStore, req: &Request<T>, what: &str) -> Result<Identity, Status> {
    let who = caller(meta, req)?;
    if who.superuser {
        Ok(who)
    } else {
        Err(MetaError::PermissionDenied(format!("{} may not {what}: only nodes and superusers may", who.principal))
            .into())
    }
}

/// The error for `who` lacking `needed` on `resource`.
pub fn denied(who: &Identity, resource: &Resource, needed: Permission) -> MetaError {
    MetaError::PermissionDenied(format!("{} lacks {needed} on {resource}", who.principal))
}
