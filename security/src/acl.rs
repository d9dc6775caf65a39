//! Permissions: what a principal may do to which resource.
//!
//! Resources form a tree, named as Pravega names them (`prn::` resource names):
//!
//! ```text
//!   prn::/                                  the cluster
//!   ├── prn::/scope:S                       a scope
//!   │   ├── prn::/scope:S/stream:T          a stream of S
//!   │   └── prn::/scope:S/reader-group:G    a reader group of S
//! ```
//!
//! A grant gives a principal one [`Permission`] on one resource and everything under it.
//! Permissions are ordered, each including the ones before it: `read` (read events and
//! metadata, take part in a reader group) < `write` (append, transactions, create streams in a
//! scope) < `admin` (create, seal, truncate, scale, delete, update policies, and grant on the
//! resource). Superusers (`--superusers`, and nodes that present a TLS client certificate) may
//! do everything.
//!
//! The grants live in the controller's replicated state ([`Acl`] is part of its Raft state
//! machine); segment stores keep a copy from their heartbeats. Invariant: checking is a pure
//! function of the grants and the caller's identity, so every node decides alike.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::auth::Identity;

/// What a grant allows, each level including the ones below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Permission {
    Read,
    Write,
    Admin,
}

impl FromStr for Permission {
    type Err = AclError;
    fn from_str(s: &str) -> Result<Self, AclError> {
        match s {
            "read" => Ok(Permission::Read),
            "write" => Ok(Permission::Write),
            "admin" => Ok(Permission::Admin),
            _ => Err(AclError::BadPermission(s.to_owned())),
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Permission::Read => "read",
            Permission::Write => "write",
            Permission::Admin => "admin",
        })
    }
}

/// A thing permissions are granted on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Resource {
    Cluster,
    Scope(String),
    Stream { scope: String, stream: String },
    ReaderGroup { scope: String, group: String },
}

impl Resource {
    pub fn scope(scope: &str) -> Resource {
        Resource::Scope(scope.to_owned())
    }

    pub fn stream(scope: &str, stream: &str) -> Resource {
        Resource::Stream { scope: scope.to_owned(), stream: stream.to_owned() }
    }

    pub fn reader_group(scope: &str, group: &str) -> Resource {
        Resource::ReaderGroup { scope: scope.to_owned(), group: group.to_owned() }
    }

    /// The resource directly above this one (`None` for the cluster).
    pub fn parent(&self) -> Option<Resource> {
        match self {
            Resource::Cluster => None,
            Resource::Scope(_) => Some(Resource::Cluster),
            Resource::Stream { scope, .. } | Resource::ReaderGroup { scope, .. } => {
                Some(Resource::Scope(scope.clone()))
            }
        }
    }

    /// The scope this resource is in or is (`None` for the cluster).
    pub fn scope_name(&self) -> Option<&str> {
        match self {
            Resource::Cluster => None,
            Resource::Scope(s) | Resource::Stream { scope: s, .. } | Resource::ReaderGroup { scope: s, .. } => Some(s),
        }
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Resource::Cluster => f.write_str("prn::/"),
            Resource::Scope(s) => write!(f, "prn::/scope:{s}"),
            Resource::Stream { scope, stream } => write!(f, "prn::/scope:{scope}/stream:{stream}"),
            Resource::ReaderGroup { scope, group } => write!(f, "prn::/scope:{scope}/reader-group:{group}"),
        }
    }
}

impl FromStr for Resource {
    type Err = AclError;
    /// `prn::/`, `prn::/scope:S`, `prn::/scope:S/stream:T`, `prn::/scope:S/reader-group:G`.
    fn from_str(s: &str) -> Result<Self, AclError> {
        let bad = || AclError::BadResource(s.to_owned());
        let rest = s.strip_prefix("prn::/").ok_or_else(bad)?;
        if rest.is_empty() {
            return Ok(Resource::Cluster);
        }
        let mut parts = rest.split('/');
        let scope = parts.next().and_then(|p| p.strip_prefix("scope:")).filter(|n| !n.is_empty()).ok_or_else(bad)?;
        let resource = match parts.next() {
            None => Resource::scope(scope),
            Some(p) => match p.split_once(':') {
                Some(("stream", n)) if !n.is_empty() => Resource::stream(scope, n),
                Some(("reader-group", n)) if !n.is_empty() => Resource::reader_group(scope, n),
                _ => return Err(bad()),
            },
        };
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(resource)
    }
}

/// One permission of one principal on one resource.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Grant {
    pub principal: String,
    pub resource: Resource,
    pub permission: Permission,
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.principal, self.permission, self.resource)
    }
}

/// Why an ACL request is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AclError {
    #[error("{0:?} is not a permission (read, write, admin)")]
    BadPermission(String),
    #[error(
        "{0:?} is not a resource name (prn::/, prn::/scope:S, prn::/scope:S/stream:T, prn::/scope:S/reader-group:G)"
    )]
    BadResource(String),
    #[error("a principal name must be 1 to 256 visible characters without spaces, not {0:?}")]
    BadPrincipal(String),
}

/// Checks a principal name: what a token file, a JWT `sub` or a grant may name.
pub fn check_principal(name: &str) -> Result<(), AclError> {
    crate::auth::check_principal(name).map_err(|_| AclError::BadPrincipal(name.to_owned()))
}

/// Every grant of a cluster. Part of the controller's replicated state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acl {
    grants: BTreeSet<Grant>,
    /// Bumped by every change, so a copy can tell it is current.
    version: u64,
}

impl Acl {
    /// Adds `grant`; true if it was not there.
    pub fn grant(&mut self, grant: Grant) -> bool {
        let added = self.grants.insert(grant);
        if added {
            self.version += 1;
        }
        added
    }

    /// Removes `grant`; true if it was there.
    pub fn revoke(&mut self, grant: &Grant) -> bool {
        let removed = self.grants.remove(grant);
        if removed {
            self.version += 1;
        }
        removed
    }

    /// Removes every grant on `resource` and below it (a deleted scope or stream takes its
    /// grants along, so a new one of the same name starts with none).
    pub fn forget(&mut self, resource: &Resource) {
        let before = self.grants.len();
        self.grants.retain(|g| !is_within(&g.resource, resource));
        if self.grants.len() != before {
            self.version += 1;
        }
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn grants(&self) -> impl Iterator<Item = &Grant> {
        self.grants.iter()
    }

    /// A copy holding `grants` at `version` (what a segment store builds from a heartbeat).
    pub fn from_grants(version: u64, grants: impl IntoIterator<Item = Grant>) -> Acl {
        Acl { grants: grants.into_iter().collect(), version }
    }

    /// Whether `who` holds at least `needed` on `resource` (directly or on a resource above
    /// it).
    pub fn allows(&self, who: &Identity, resource: &Resource, needed: Permission) -> bool {
        if who.superuser {
            return true;
        }
        let mut at = Some(resource.clone());
        while let Some(r) = at {
            if self.grants.iter().any(|g| g.principal == who.principal && g.resource == r && g.permission >= needed) {
                return true;
            }
            at = r.parent();
        }
        false
    }

    /// Whether `who` holds any permission on `scope`, on anything in it, or on the cluster:
    /// what decides whether a listing of scopes shows `scope`.
    pub fn sees_scope(&self, who: &Identity, scope: &str) -> bool {
        who.superuser
            || self.grants.iter().any(|g| {
                g.principal == who.principal
                    && (g.resource == Resource::Cluster || g.resource.scope_name() == Some(scope))
            })
    }

    /// Whether `who` holds any permission on `resource` or on anything above it or below it:
    /// what decides whether a listing shows it.
    pub fn sees(&self, who: &Identity, resource: &Resource) -> bool {
        who.superuser
            || self.allows(who, resource, Permission::Read)
            || self.grants.iter().any(|g| g.principal == who.principal && is_within(&g.resource, resource))
    }
}

/// Whether `inner` is `outer` or below it.
fn is_within(inner: &Resource, outer: &Resource) -> bool {
    let mut at = Some(inner.clone());
    while let Some(r) = at {
        if &r == outer {
            return true;
        }
        at = r.parent();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> Identity {
        Identity { principal: name.to_owned(), superuser: false }
    }

    #[test]
    fn resource_names_read_back() {
        for r in [Resource::Cluster, Resource::scope("a"), Resource::stream("a", "b"), Resource::reader_group("a", "g")]
        {
            assert_eq!(r.to_string().parse::<Resource>().unwrap(), r);
        }
        for bad in
            ["", "scope:a", "prn::/scope:", "prn::/stream:a", "prn::/scope:a/topic:b", "prn::/scope:a/stream:b/c"]
        {
            assert!(bad.parse::<Resource>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_grant_covers_what_is_below_it_and_lower_permissions_only() {
        let mut acl = Acl::default();
        acl.grant(Grant { principal: "w".into(), resource: Resource::stream("a", "s"), permission: Permission::Write });
        acl.grant(Grant { principal: "r".into(), resource: Resource::scope("a"), permission: Permission::Read });
        let (w, r) = (user("w"), user("r"));
        assert!(acl.allows(&w, &Resource::stream("a", "s"), Permission::Read));
        assert!(acl.allows(&w, &Resource::stream("a", "s"), Permission::Write));
        assert!(!acl.allows(&w, &Resource::stream("a", "s"), Permission::Admin));
        assert!(!acl.allows(&w, &Resource::stream("a", "other"), Permission::Write));
        assert!(!acl.allows(&w, &Resource::scope("a"), Permission::Read));
        assert!(acl.allows(&r, &Resource::stream("a", "x"), Permission::Read));
        assert!(acl.allows(&r, &Resource::reader_group("a", "g"), Permission::Read));
        assert!(!acl.allows(&r, &Resource::stream("a", "x"), Permission::Write));
        assert!(!acl.allows(&r, &Resource::stream("b", "x"), Permission::Read));
        assert!(acl.sees_scope(&w, "a") && !acl.sees_scope(&w, "b"));
        assert!(acl.sees(&w, &Resource::scope("a")));
        assert!(!acl.sees(&w, &Resource::stream("a", "other")));
        assert!(acl.allows(
            &Identity { principal: "x".into(), superuser: true },
            &Resource::Cluster,
            Permission::Admin
        ));
    }

    #[test]
    fn forgetting_a_scope_drops_the_grants_within_it() {
        let mut acl = Acl::default();
        acl.grant(Grant { principal: "w".into(), resource: Resource::stream("a", "s"), permission: Permission::Write });
        acl.grant(Grant { principal: "w".into(), resource: Resource::scope("b"), permission: Permission::Write });
        let v = acl.version();
        acl.forget(&Resource::scope("a"));
        assert_eq!(acl.grants().count(), 1);
        assert!(acl.version() > v);
    }
}
