//! Segments: the current, head and per-epoch sets, successors, where a segment is served
//! (`getURI`), and manual scaling.
//!
//! `getURI` answers for any segment id of any stream, existing or not: the Pravega client
//! asks it for its reader-group table `scope/<group>_kvtable/0.#epoch.0`, whose "stream" is
//! never created. The answer is the Pravega segment endpoint of the store that serves the
//! container the segment's qualified name hashes to (`nadi_proto::names::container_of`, the
//! same placement as every Nadi segment), as the stores report it in their heartbeats. While
//! no store reported one it is UNAVAILABLE, which the client retries.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nadi_client::nadi_proto::controller::v1 as npb;
use nadi_client::nadi_proto::names::{container_of, segment_name, validate_scope, validate_stream};
use nadi_client::nadi_proto::{ErrorCode, SegmentId};
use tonic::{Request, Response, Status};

use super::convert::{self, code_of, segment_of, segment_range, stream_of};
use super::{PravegaController, Reply, pb};

/// How long a fetched [`Routes`] answers `getURI` before it is fetched again.
const ROUTES_TTL: Duration = Duration::from_secs(1);

/// A [`Routes`] and when it was fetched.
pub type Fetched = (Instant, Arc<Routes>);

/// Where the Pravega wire protocol of each container is served, from Nadi's cluster view.
#[derive(Debug, Default)]
pub struct Routes {
    /// The store serving each container (its leader, for a replicated one), by container.
    store_of: Vec<String>,
    /// Each store's Pravega segment endpoint, `HOST:PORT`.
    pravega: HashMap<String, String>,
}

impl Routes {
    /// The Pravega endpoint serving segment `name`, or why there is none.
    fn endpoint(&self, name: &str) -> Result<&str, String> {
        if self.store_of.is_empty() {
            return Err("no segment store has registered with the controller yet".into());
        }
        let container = container_of(name, self.store_of.len() as u32);
        let store = &self.store_of[container as usize];
        if store.is_empty() {
            return Err(format!("container {container} has no segment store"));
        }
        self.pravega.get(store).map(String::as_str).ok_or_else(|| {
            format!(
                "segment store {store} (container {container}) has not reported a Pravega segment endpoint: \
                 start it with --pravega-segment-listen"
            )
        })
    }
}

impl PravegaController {
    /// The routes, fetched again when older than [`ROUTES_TTL`] or when `stale` is set.
    async fn routes(&self, stale: bool) -> Result<Arc<Routes>, Status> {
        if !stale
            && let Some((at, r)) = self.routes.lock().as_ref()
            && at.elapsed() < ROUTES_TTL
        {
            return Ok(r.clone());
        }
        let info = self.nadi.cluster_info().await.map_err(convert::status)?;
        let mut store_of = vec![String::new(); info.containers.len()];
        for a in &info.containers {
            if let Some(slot) = store_of.get_mut(a.container as usize) {
                slot.clone_from(&a.store_id);
            }
        }
        let pravega = info
            .segment_stores
            .into_iter()
            .filter(|s| !s.pravega_endpoint.is_empty())
            .map(|s| (s.store_id, s.pravega_endpoint))
            .collect();
        let routes = Arc::new(Routes { store_of, pravega });
        *self.routes.lock() = Some((Instant::now(), routes.clone()));
        Ok(routes)
    }
}

/// `getURI`: the Pravega segment endpoint serving the segment (see the module docs).
pub async fn get_uri(c: &PravegaController, req: Request<pb::SegmentId>) -> Reply<pb::NodeUri> {
    let (scope, stream, id) = segment_of(req.get_ref())?;
    validate_scope(&scope).map_err(|e| Status::invalid_argument(e.to_string()))?;
    validate_stream(&stream).map_err(|e| Status::invalid_argument(e.to_string()))?;
    let name = segment_name(&scope, &stream, id);
    let mut routes = c.routes(false).await?;
    if routes.endpoint(&name).is_err() {
        // Perhaps a store reported its endpoint since the view was fetched.
        routes = c.routes(true).await?;
    }
    let endpoint = routes.endpoint(&name).map_err(Status::unavailable)?;
    // `HOST:PORT`, checked by the controller when the store reported it.
    let (host, port) = endpoint
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h, p.parse::<i32>().ok()?)))
        .ok_or_else(|| Status::internal(format!("malformed Pravega segment endpoint {endpoint:?}")))?;
    Ok(Response::new(pb::NodeUri { endpoint: host.to_owned(), port }))
}

/// `getCurrentSegments`: the active segments; none for a sealed stream (the client reads an
/// empty answer as "sealed").
pub async fn get_current_segments(c: &PravegaController, req: Request<pb::StreamInfo>) -> Reply<pb::SegmentRanges> {
    let nadi = c.caller(&req);
    let (scope, stream) = stream_of(Some(req.get_ref()))?;
    let info = nadi.stream_info(&scope, &stream).await.map_err(convert::status)?;
    let segments = if info.state == npb::StreamState::Sealed as i32 { &[][..] } else { &info.active_segments[..] };
    Ok(Response::new(convert::segment_ranges(&scope, &stream, segments)))
}

/// `getEpochSegments`: the segments of one epoch (what a client resuming a transaction begun
/// in that epoch writes to).
pub async fn get_epoch_segments(
    c: &PravegaController,
    req: Request<pb::GetEpochSegmentsRequest>,
) -> Reply<pb::SegmentRanges> {
    let nadi = c.caller(&req);
    let (scope, stream) = stream_of(req.get_ref().stream_info.as_ref())?;
    let epoch = u32::try_from(req.get_ref().epoch)
        .map_err(|_| Status::invalid_argument(format!("epoch {} is negative", req.get_ref().epoch)))?;
    let history = nadi.stream_history(&scope, &stream).await.map_err(convert::status)?;
    let e = history
        .epochs
        .iter()
        .find(|e| e.epoch == epoch)
        .ok_or_else(|| Status::not_found(format!("{scope}/{stream} has no epoch {epoch}")))?;
    Ok(Response::new(convert::segment_ranges(&scope, &stream, &e.segments)))
}

/// `getSegments`: the head of the stream (the segments a reader from the beginning starts
/// with, each at its start offset). The timestamp is not used: every time is answered with the
/// head (docs/pravega-compat.md).
pub async fn get_segments(c: &PravegaController, req: Request<pb::GetSegmentsRequest>) -> Reply<pb::SegmentsAtTime> {
    let nadi = c.caller(&req);
    let (scope, stream) = stream_of(req.get_ref().stream_info.as_ref())?;
    let head = nadi.stream_cut(&scope, &stream, false).await.map_err(convert::status)?;
    let segments = head
        .into_iter()
        .map(|p| pb::segments_at_time::SegmentLocation {
            segment_id: Some(convert::segment_id(&scope, &stream, p.segment_id)),
            offset: i64::try_from(p.offset).unwrap_or(i64::MAX),
        })
        .collect();
    Ok(Response::new(pb::SegmentsAtTime { segments, delegation_token: String::new() }))
}

/// `getSegmentsImmediatelyFollowing`: the segments that replaced a sealed one, each with ALL
/// of its predecessors (a merge successor lists every segment it merged); none while the
/// segment is active or after the stream was sealed.
pub async fn successors(c: &PravegaController, req: Request<pb::SegmentId>) -> Reply<pb::SuccessorResponse> {
    let nadi = c.caller(&req);
    let (scope, stream, id) = segment_of(req.get_ref())?;
    let mut found = nadi.successors(&scope, &stream, id.packed()).await.map_err(convert::status)?;
    found.sort_by(|a, b| {
        let low =
            |s: &npb::SuccessorSegment| s.segment.as_ref().and_then(|l| l.segment.as_ref()).map_or(0.0, |s| s.key_low);
        low(a).total_cmp(&low(b))
    });
    let segments = found
        .into_iter()
        .filter_map(|s| {
            let seg = s.segment?.segment?;
            Some(pb::successor_response::SegmentEntry {
                segment: Some(segment_range(&scope, &stream, seg.id, seg.key_low, seg.key_high)),
                value: s.predecessor_ids.iter().map(|&p| p as i64).collect(),
            })
        })
        .collect();
    Ok(Response::new(pb::SuccessorResponse { segments, delegation_token: String::new() }))
}

/// `isSegmentValid`: true while the segment is active in an open stream.
pub async fn is_segment_valid(
    c: &PravegaController,
    req: Request<pb::SegmentId>,
) -> Reply<pb::SegmentValidityResponse> {
    let nadi = c.caller(&req);
    let (scope, stream, id) = segment_of(req.get_ref())?;
    let response = match nadi.stream_info(&scope, &stream).await {
        Ok(info) => {
            info.state != npb::StreamState::Sealed as i32 && info.active_segments.iter().any(|s| s.id == id.packed())
        }
        Err(e)
            if matches!(code_of(&e), ErrorCode::StreamNotFound | ErrorCode::ScopeNotFound | ErrorCode::InvalidName) =>
        {
            false
        }
        Err(e) => return Err(convert::status(e)),
    };
    Ok(Response::new(pb::SegmentValidityResponse { response }))
}

/// `scale`: Nadi's manual scale, which returns once the new epoch is current. The answer's
/// `epoch` is the epoch the scale started from (Pravega's convention), so `checkScale` of it
/// answers SUCCESS at once.
pub async fn scale(c: &PravegaController, req: Request<pb::ScaleRequest>) -> Reply<pb::ScaleResponse> {
    use pb::scale_response::ScaleStreamStatus as S;
    let nadi = c.caller(&req);
    let req = req.into_inner();
    let (scope, stream) = stream_of(req.stream_info.as_ref())?;
    let failed = |status: S| Ok(Response::new(pb::ScaleResponse { status: status as i32, segments: vec![], epoch: 0 }));
    let Ok(sealed) = req.sealed_segments.iter().map(|&s| u64::try_from(s)).collect::<Result<Vec<u64>, _>>() else {
        return failed(S::PreconditionFailed);
    };
    let scale = npb::ScaleStreamRequest {
        scope: scope.clone(),
        stream: stream.clone(),
        sealed_segment_ids: sealed,
        new_ranges: req.new_key_ranges.iter().map(|r| npb::KeyRange { low: r.start, high: r.end }).collect(),
    };
    match nadi.scale_stream(scale).await {
        Ok(info) => {
            let new: Vec<&npb::Segment> =
                info.active_segments.iter().filter(|s| SegmentId::from_packed(s.id).epoch() == info.epoch).collect();
            Ok(Response::new(pb::ScaleResponse {
                status: S::Started as i32,
                segments: new.iter().map(|s| segment_range(&scope, &stream, s.id, s.key_low, s.key_high)).collect(),
                epoch: info.epoch.saturating_sub(1) as i32,
            }))
        }
        Err(e) => match code_of(&e) {
            ErrorCode::InvalidArgument
            | ErrorCode::SegmentNotFound
            | ErrorCode::Sealed
            | ErrorCode::ScaleInProgress
            | ErrorCode::TxnNotOpen => failed(S::PreconditionFailed),
            _ => Err(convert::status(e)),
        },
    }
}

/// `checkScale`: SUCCESS once the stream is past `epoch`; IN_PROGRESS while it is at it;
/// INVALID_INPUT for an epoch it never had or a stream that does not exist.
pub async fn check_scale(
    c: &PravegaController,
    req: Request<pb::ScaleStatusRequest>,
) -> Reply<pb::ScaleStatusResponse> {
    use pb::scale_status_response::ScaleStatus as S;
    let nadi = c.caller(&req);
    let (scope, stream) = stream_of(req.get_ref().stream_info.as_ref())?;
    let asked = req.get_ref().epoch;
    let status = match nadi.stream_info(&scope, &stream).await {
        Ok(info) => match u32::try_from(asked) {
            Ok(epoch) if epoch < info.epoch => S::Success,
            Ok(epoch) if epoch == info.epoch => S::InProgress,
            _ => S::InvalidInput,
        },
        Err(e)
            if matches!(code_of(&e), ErrorCode::StreamNotFound | ErrorCode::ScopeNotFound | ErrorCode::InvalidName) =>
        {
            S::InvalidInput
        }
        Err(e) => return Err(convert::status(e)),
    };
    Ok(Response::new(pb::ScaleStatusResponse { status: status as i32 }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_name_the_store_of_the_segments_container() {
        let routes = Routes {
            store_of: vec!["a".into(), "b".into(), String::new()],
            pravega: HashMap::from([("a".to_owned(), "h1:1".to_owned())]),
        };
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..64 {
            let name = format!("sc/rg{i}_kvtable/0.#epoch.0");
            let r = routes.endpoint(&name);
            match container_of(&name, 3) {
                0 => assert_eq!(r, Ok("h1:1")),
                1 => assert!(r.unwrap_err().contains("--pravega-segment-listen")),
                _ => assert!(r.unwrap_err().contains("no segment store")),
            }
            seen.insert(container_of(&name, 3));
        }
        assert_eq!(seen.len(), 3, "64 names reach every container");
        assert!(Routes::default().endpoint("a/b/0.#epoch.0").unwrap_err().contains("registered"));
    }
}
