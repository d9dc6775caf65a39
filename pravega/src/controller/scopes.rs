//! Scopes and streams: create, delete, list, exists, configuration, seal.
//!
//! Each outcome the Pravega client branches on is a value of the RPC's status enum (for
//! example `createScope` of an existing scope is `SCOPE_EXISTS`, which the Python client turns
//! into `False`); failures without an enum value are gRPC statuses ([`convert::status`]).
//! Listing answers everything after the continuation token in one page, with the page's last
//! name as the next token: the following call gets the empty page that ends the listing.

use nadi_client::StreamSpec;
use nadi_client::nadi_proto::ErrorCode;
use nadi_client::nadi_proto::names::{validate_scope, validate_stream};
use tonic::{Request, Response};

use super::convert::{self, code_of, stream_of};
use super::{PravegaController, Reply, pb};

pub async fn create_scope(c: &PravegaController, req: Request<pb::ScopeInfo>) -> Reply<pb::CreateScopeStatus> {
    use pb::create_scope_status::Status as S;
    let nadi = c.caller(&req);
    let scope = req.into_inner().scope;
    let status = match nadi.create_scope(&scope).await {
        Ok(()) => S::Success,
        Err(e) => match code_of(&e) {
            ErrorCode::ScopeExists => S::ScopeExists,
            ErrorCode::InvalidName => S::InvalidScopeName,
            _ => return Err(convert::status(e)),
        },
    };
    Ok(Response::new(pb::CreateScopeStatus { status: status as i32 }))
}

pub async fn delete_scope(c: &PravegaController, req: Request<pb::ScopeInfo>) -> Reply<pb::DeleteScopeStatus> {
    use pb::delete_scope_status::Status as S;
    let nadi = c.caller(&req);
    let scope = req.into_inner().scope;
    // A malformed name names no scope.
    if validate_scope(&scope).is_err() {
        return Ok(Response::new(pb::DeleteScopeStatus { status: S::ScopeNotFound as i32 }));
    }
    let status = match nadi.delete_scope(&scope).await {
        Ok(()) => S::Success,
        Err(e) => match code_of(&e) {
            ErrorCode::ScopeNotFound => S::ScopeNotFound,
            ErrorCode::ScopeNotEmpty => S::ScopeNotEmpty,
            _ => return Err(convert::status(e)),
        },
    };
    Ok(Response::new(pb::DeleteScopeStatus { status: status as i32 }))
}

/// The names after `token` (all of them for an empty token), and the token of the next page:
/// the last name given, or `token` again for the empty page that ends the listing.
fn page(mut names: Vec<String>, token: &str) -> (Vec<String>, String) {
    names.sort();
    names.retain(|n| token.is_empty() || n.as_str() > token);
    let next = names.last().cloned().unwrap_or_else(|| token.to_owned());
    (names, next)
}

pub async fn list_scopes(c: &PravegaController, req: Request<pb::ScopesRequest>) -> Reply<pb::ScopesResponse> {
    let nadi = c.caller(&req);
    let token = req.into_inner().continuation_token.map(|t| t.token).unwrap_or_default();
    let scopes = nadi.list_scopes().await.map_err(convert::status)?;
    let (scopes, next) = page(scopes, &token);
    Ok(Response::new(pb::ScopesResponse { scopes, continuation_token: Some(pb::ContinuationToken { token: next }) }))
}

pub async fn check_scope_exists(c: &PravegaController, req: Request<pb::ScopeInfo>) -> Reply<pb::ExistsResponse> {
    let nadi = c.caller(&req);
    let scope = req.into_inner().scope;
    if validate_scope(&scope).is_err() {
        return Ok(Response::new(pb::ExistsResponse { exists: false }));
    }
    let exists = match nadi.list_streams(&scope).await {
        Ok(_) => true,
        Err(e) if code_of(&e) == ErrorCode::ScopeNotFound => false,
        Err(e) => return Err(convert::status(e)),
    };
    Ok(Response::new(pb::ExistsResponse { exists }))
}

pub async fn create_stream(c: &PravegaController, req: Request<pb::StreamConfig>) -> Reply<pb::CreateStreamStatus> {
    use pb::create_stream_status::Status as S;
    let nadi = c.caller(&req);
    let config = req.into_inner();
    let (scope, stream) = stream_of(config.stream_info.as_ref())?;
    let status = if validate_scope(&scope).is_err() {
        S::ScopeNotFound
    } else if validate_stream(&stream).is_err() {
        S::InvalidStreamName
    } else {
        let spec = StreamSpec { config: convert::config_to_nadi(&config)? };
        match nadi.create_stream(&scope, &stream, spec).await {
            Ok(_) => S::Success,
            Err(e) => match code_of(&e) {
                ErrorCode::StreamExists => S::StreamExists,
                ErrorCode::ScopeNotFound => S::ScopeNotFound,
                ErrorCode::InvalidName => S::InvalidStreamName,
                _ => return Err(convert::status(e)),
            },
        }
    };
    Ok(Response::new(pb::CreateStreamStatus { status: status as i32 }))
}

/// The `UpdateStreamStatus` for a failure that has a value in it (a missing scope or stream,
/// or a name that names none), else the error as a status.
fn update_failure(scope: &str, e: nadi_client::ClientError) -> Result<pb::update_stream_status::Status, tonic::Status> {
    use pb::update_stream_status::Status as S;
    match code_of(&e) {
        ErrorCode::ScopeNotFound => Ok(S::ScopeNotFound),
        ErrorCode::StreamNotFound => Ok(S::StreamNotFound),
        ErrorCode::InvalidName if validate_scope(scope).is_err() => Ok(S::ScopeNotFound),
        ErrorCode::InvalidName => Ok(S::StreamNotFound),
        _ => Err(convert::status(e)),
    }
}

/// Replaces the stream's scaling and retention policies. The active segments stay as they
/// are (Pravega would scale a fixed stream to a new segment count; Nadi leaves that to
/// `scale` or `nadi stream scale`).
pub async fn update_stream(c: &PravegaController, req: Request<pb::StreamConfig>) -> Reply<pb::UpdateStreamStatus> {
    use pb::update_stream_status::Status as S;
    let nadi = c.caller(&req);
    let config = req.into_inner();
    let (scope, stream) = stream_of(config.stream_info.as_ref())?;
    let status = match nadi.update_stream(&scope, &stream, convert::config_to_nadi(&config)?).await {
        Ok(_) => S::Success,
        Err(e) => update_failure(&scope, e)?,
    };
    Ok(Response::new(pb::UpdateStreamStatus { status: status as i32 }))
}

pub async fn get_stream_configuration(c: &PravegaController, req: Request<pb::StreamInfo>) -> Reply<pb::StreamConfig> {
    let nadi = c.caller(&req);
    let (scope, stream) = stream_of(Some(req.get_ref()))?;
    let info = nadi.stream_info(&scope, &stream).await.map_err(convert::status)?;
    Ok(Response::new(convert::config_to_pravega(&scope, &stream, info.config.as_ref())))
}

pub async fn seal_stream(c: &PravegaController, req: Request<pb::StreamInfo>) -> Reply<pb::UpdateStreamStatus> {
    use pb::update_stream_status::Status as S;
    let nadi = c.caller(&req);
    let (scope, stream) = stream_of(Some(req.get_ref()))?;
    let status = match nadi.seal_stream(&scope, &stream).await {
        Ok(()) => S::Success,
        Err(e) => update_failure(&scope, e)?,
    };
    Ok(Response::new(pb::UpdateStreamStatus { status: status as i32 }))
}

pub async fn delete_stream(c: &PravegaController, req: Request<pb::StreamInfo>) -> Reply<pb::DeleteStreamStatus> {
    use pb::delete_stream_status::Status as S;
    let nadi = c.caller(&req);
    let (scope, stream) = stream_of(Some(req.get_ref()))?;
    let status = match nadi.delete_stream(&scope, &stream).await {
        Ok(()) => S::Success,
        Err(e) => match code_of(&e) {
            ErrorCode::StreamNotFound | ErrorCode::ScopeNotFound | ErrorCode::InvalidName => S::StreamNotFound,
            ErrorCode::StreamNotSealed => S::StreamNotSealed,
            _ => return Err(convert::status(e)),
        },
    };
    Ok(Response::new(pb::DeleteStreamStatus { status: status as i32 }))
}

pub async fn list_streams_in_scope(
    c: &PravegaController,
    req: Request<pb::StreamsInScopeRequest>,
) -> Reply<pb::StreamsInScopeResponse> {
    use pb::streams_in_scope_response::Status as S;
    let nadi = c.caller(&req);
    let req = req.into_inner();
    let scope = req.scope.map(|s| s.scope).unwrap_or_default();
    let token = req.continuation_token.map(|t| t.token).unwrap_or_default();
    let (names, status) = match nadi.list_streams(&scope).await {
        Ok(names) => (names, S::Success),
        Err(e) => match code_of(&e) {
            ErrorCode::ScopeNotFound | ErrorCode::InvalidName => (Vec::new(), S::ScopeNotFound),
            _ => return Err(convert::status(e)),
        },
    };
    let (names, next) = page(names, &token);
    Ok(Response::new(pb::StreamsInScopeResponse {
        streams: names.iter().map(|n| convert::stream_info(&scope, n)).collect(),
        continuation_token: Some(pb::ContinuationToken { token: next }),
        status: status as i32,
    }))
}

pub async fn check_stream_exists(c: &PravegaController, req: Request<pb::StreamInfo>) -> Reply<pb::ExistsResponse> {
    let nadi = c.caller(&req);
    let (scope, stream) = stream_of(Some(req.get_ref()))?;
    let exists = match nadi.stream_info(&scope, &stream).await {
        Ok(_) => true,
        Err(e)
            if matches!(code_of(&e), ErrorCode::StreamNotFound | ErrorCode::ScopeNotFound | ErrorCode::InvalidName) =>
        {
            false
        }
        Err(e) => return Err(convert::status(e)),
    };
    Ok(Response::new(pb::ExistsResponse { exists }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_page_then_the_empty_page() {
        let names = vec!["b".to_owned(), "a".to_owned(), "c".to_owned()];
        let (first, token) = page(names.clone(), "");
        assert_eq!(first, ["a", "b", "c"]);
        assert_eq!(token, "c");
        let (second, again) = page(names.clone(), &token);
        assert!(second.is_empty());
        assert_eq!(again, "c");
        // A page after "a" (a smaller page size elsewhere, or a listing that grew).
        assert_eq!(page(names, "a").0, ["b", "c"]);
        let (none, t) = page(Vec::new(), "");
        assert!(none.is_empty() && t.is_empty());
    }
}
