//! The segment store's own HTTP listener (`nadi segment-store --http-listen`): `/metrics`,
//! `/health` and `/ready`, for Prometheus and for orchestrators' probes.
//!
//! `/health` answers 200 while the process serves; `/ready` answers 200 once the store has
//! registered with the controllers (before that, 503). Standalone has no listener of its own:
//! its admin HTTP API shows the same metrics.
//!
//! Owns: the router. Calls: `crate::metrics`. Called by: `node::segment_store`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::registry::Registry;

use crate::metrics::{StoreMetrics, encode};

#[derive(Clone)]
struct OpsState {
    registry: Arc<Registry>,
    ready: Arc<AtomicBool>,
    /// When set, `/metrics` needs a token with read on the cluster (`--metrics-auth true`).
    guard: Option<crate::net::access::Access>,
}

/// The router; `ready` turns true once the store registered. With `guard`, `/metrics` answers
/// only callers whose token has read on the cluster (401 without a valid token, 403 without
/// the permission).
pub fn router(metrics: &StoreMetrics, ready: Arc<AtomicBool>, guard: Option<crate::net::access::Access>) -> Router {
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let state = OpsState { registry: Arc::new(registry), ready, guard };
    Router::new()
        .route("/metrics", get(metrics_text))
        .route("/health", get(|| async { "ok\n" }))
        .route("/ready", get(ready_state))
        .fallback(|| async { (StatusCode::NOT_FOUND, "no such endpoint: /metrics, /health, /ready\n") })
        .with_state(state)
}

async fn metrics_text(State(s): State<OpsState>, headers: axum::http::HeaderMap) -> Response {
    if let Some(guard) = &s.guard {
        use nadi_security::acl::{Permission, Resource};
        match guard.authenticator().authenticate(headers.get(header::AUTHORIZATION)).await {
            Err(e) => return (StatusCode::UNAUTHORIZED, format!("{e}\n")).into_response(),
            Ok(who) if !guard.allows(&who, &Resource::Cluster, Permission::Read) => {
                let text = format!("{} lacks read on {}\n", who.principal, Resource::Cluster);
                return (StatusCode::FORBIDDEN, text).into_response();
            }
            Ok(_) => {}
        }
    }
    match encode(&s.registry) {
        Ok(text) => ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text)
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("encoding metrics: {e}\n")).into_response(),
    }
}

async fn ready_state(State(s): State<OpsState>) -> Response {
    if s.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not registered with the controllers yet\n").into_response()
    }
}
