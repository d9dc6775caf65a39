//! The admin HTTP API (axum). For now: `GET /health`.

use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

/// The admin router.
pub fn router() -> Router {
    Router::new().route("/health", get(health))
}

async fn health() -> Json<Value> {
    Json(json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") }))
}
