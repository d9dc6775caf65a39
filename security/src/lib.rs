//! Security shared by every Nadi process and client: who may connect, who is calling, and what
//! they may do.
//!
//! Owns: [`tls`] (rustls server and client configurations from `--tls-cert`, `--tls-key`,
//! `--tls-ca`, reloaded when the files change; mutual TLS between nodes), [`auth`] (bearer
//! tokens: a file of hashed tokens with named principals, and JWTs verified against a key;
//! the request layer that turns a token into a [`auth::Principal`]), [`listen`] (accepting
//! plain or TLS connections for tonic and axum, handshakes off the accept loop; the
//! connection's verified client certificate; the gate of node-only services), [`acl`] (resources,
//! permissions and the grants that connect principals to them), [`channel`] (client channels
//! that carry the token and trust the CA). Calls: nothing of ours. Called by: the controller,
//! the segment store, the client and the CLI.
//!
//! The checks themselves live where the request is understood (the controller's services and
//! the segment store's): this crate only answers "who is this" and "may they".

pub mod acl;
pub mod auth;
pub mod channel;
pub mod listen;
pub mod tls;
