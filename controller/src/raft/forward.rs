//! Any controller node accepts any client request: a tower layer in front of the public gRPC
//! services sends each request to the Raft leader.
//!
//! - On the leader, the request first confirms leadership with a quorum (openraft's read index,
//!   `ensure_linearizable`), so what it then reads reflects every change committed before it
//!   arrived: reads are linearizable, and a deposed leader cannot answer from stale state.
//! - On a follower, the whole HTTP/2 request is proxied to the leader's gRPC address, unchanged.
//!   A proxied request carries `x-nadi-forwarded`; a node that receives one but is not the leader
//!   answers UNAVAILABLE instead of forwarding again (no loops while leadership moves).
//! - With no leader known, the answer is UNAVAILABLE (retryable): clients retry or fail over.
//!
//! The Raft service itself (`/nadi.raft.v1.RaftService/`) is never forwarded.
//!
//! A forwarded request can be applied by the leader and its answer still be lost on the way
//! back (a timeout, a broken connection): the client then retries a request that already took
//! effect. [`ForwardFaults`] injects exactly that loss, for tests.

use std::collections::HashMap;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use nadi_proto::ErrorCode;
use openraft::Raft;
use tonic::body::Body;
use tower::{Layer, Service};

use super::network::Channels;
use super::{NodeId, TypeConfig};

const FORWARDED: &str = "x-nadi-forwarded";

/// The environment variable that arms [`ForwardFaults`] in a controller process:
/// `METHOD:N[,METHOD:N…]` drops the leader's answers to the next N forwarded calls of each gRPC
/// method named (the last part of its path, e.g. `ScaleStream`, `BeginTxn`). Never set in
/// production.
pub const DROP_FORWARDED_ANSWERS_ENV: &str = "NADI_FAULT_DROP_FORWARDED_ANSWERS";

/// A fault-injection hook on the forward path, for tests: the leader receives and runs the
/// request, and the follower throws its answer away and tells the client UNAVAILABLE, as if the
/// answer had timed out. Clones share the counters; empty (the default) it does nothing.
#[derive(Debug, Clone, Default)]
pub struct ForwardFaults(Arc<parking_lot::Mutex<HashMap<String, u32>>>);

impl ForwardFaults {
    /// Armed from [`DROP_FORWARDED_ANSWERS_ENV`] if it is set (malformed parts are ignored).
    pub fn from_env() -> ForwardFaults {
        let faults = ForwardFaults::default();
        if let Ok(spec) = std::env::var(DROP_FORWARDED_ANSWERS_ENV) {
            for part in spec.split(',') {
                if let Some((method, n)) = part.trim().split_once(':')
                    && let Ok(n) = n.parse()
                {
                    faults.drop_next_answers(method, n);
                }
            }
        }
        faults
    }

    /// Drops the leader's answers to the next `n` forwarded calls of gRPC method `method`
    /// (e.g. `ScaleStream`).
    pub fn drop_next_answers(&self, method: &str, n: u32) {
        *self.0.lock().entry(method.to_owned()).or_default() += n;
    }

    /// True if the answer to this call of `path` (`/package.Service/Method`) is to be dropped.
    fn take(&self, path: &str) -> bool {
        let method = path.rsplit('/').next().unwrap_or_default();
        let mut armed = self.0.lock();
        match armed.get_mut(method) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        }
    }
}

/// The layer: wrap the gRPC routes of a controller node.
#[derive(Clone)]
pub struct ForwardToLeaderLayer {
    pub id: NodeId,
    pub raft: Raft<TypeConfig>,
    pub channels: Channels,
    /// Injected losses of the leader's answers (tests only; empty otherwise).
    pub faults: ForwardFaults,
}

impl std::fmt::Debug for ForwardToLeaderLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForwardToLeaderLayer").field("id", &self.id).finish_non_exhaustive()
    }
}

impl<S> Layer<S> for ForwardToLeaderLayer {
    type Service = ForwardToLeader<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ForwardToLeader { cfg: self.clone(), inner }
    }
}

/// The service built by [`ForwardToLeaderLayer`].
#[derive(Debug, Clone)]
pub struct ForwardToLeader<S> {
    cfg: ForwardToLeaderLayer,
    inner: S,
}

fn unavailable(message: String) -> http::Response<Body> {
    nadi_proto::errors::to_status(ErrorCode::Unavailable, message, HashMap::new()).into_http()
}

impl<S> Service<http::Request<Body>> for ForwardToLeader<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<tower::BoxError>,
{
    type Response = http::Response<Body>;
    type Error = tower::BoxError;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: http::Request<Body>) -> Self::Future {
        // The readied service handles this request; a fresh clone takes its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let cfg = self.cfg.clone();
        Box::pin(async move {
            if req.uri().path().starts_with("/nadi.raft.v1.RaftService/") {
                return inner.call(req).await.map_err(Into::into);
            }
            let metrics = cfg.raft.metrics().borrow().clone();
            let Some(leader) = metrics.current_leader else {
                return Ok(unavailable("no controller leader is elected yet; retry shortly".into()));
            };
            if leader == cfg.id {
                if let Err(e) = cfg.raft.ensure_linearizable().await {
                    return Ok(unavailable(format!("this controller could not confirm its leadership: {e}")));
                }
                return inner.call(req).await.map_err(Into::into);
            }
            if req.headers().contains_key(FORWARDED) {
                return Ok(unavailable(format!(
                    "controller {} is not the leader (it believes {leader} is); retry shortly",
                    cfg.id
                )));
            }
            let Some(node) = metrics.membership_config.membership().get_node(&leader).cloned() else {
                return Ok(unavailable(format!("controller leader {leader} has no known address")));
            };
            let channel = match cfg.channels.get(&node.addr) {
                Ok(c) => c,
                Err(e) => return Ok(unavailable(format!("controller leader {leader} at {}: {e}", node.addr))),
            };
            req.headers_mut().insert(FORWARDED, http::HeaderValue::from_static("1"));
            let path = req.uri().path().to_owned();
            let mut channel = channel;
            let sent = async {
                use tower::ServiceExt;
                channel.ready().await?.call(req).await
            };
            match sent.await {
                // A unary answer's head arrives once the leader's handler has finished: the
                // request took effect, only its answer is lost.
                Ok(_) if cfg.faults.take(&path) => {
                    tracing::warn!(%path, leader, "injected fault: dropping the leader's answer to a forwarded request");
                    Ok(unavailable(format!("the answer of controller leader {leader} was lost (injected fault)")))
                }
                Ok(resp) => Ok(resp),
                Err(e) => Ok(unavailable(format!("could not reach controller leader {leader} at {}: {e}", node.addr))),
            }
        })
    }
}
