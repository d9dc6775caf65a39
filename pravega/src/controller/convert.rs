//! Shapes shared by the RPCs: names and ids out of requests, segment ranges and policies both
//! ways, and Nadi's errors as gRPC statuses.
//!
//! Invariants: a `SegmentRange` always carries its `segmentId` with its `streamInfo` (the
//! Pravega client unwraps both); a key range that ends the key space ends at exactly 1.0;
//! nothing here panics on what a request holds.

use std::collections::HashMap;

use nadi_client::{ClientError, ErrorKind, nadi_proto};
use nadi_proto::controller::v1 as npb;
use nadi_proto::{ErrorCode, SegmentId};
use tonic::Status;

use super::pb;

/// A request's stream, checked: `(scope, stream)`. A missing `streamInfo` is INVALID_ARGUMENT;
/// the names themselves are checked by Nadi (or by the caller, where a status enum needs to
/// tell a bad scope from a bad stream).
pub fn stream_of(info: Option<&pb::StreamInfo>) -> Result<(String, String), Status> {
    let info = info.ok_or_else(|| Status::invalid_argument("the request carries no streamInfo"))?;
    Ok((info.scope.clone(), info.stream.clone()))
}

/// The `StreamInfo` of `scope/stream` as the client expects it back.
pub fn stream_info(scope: &str, stream: &str) -> pb::StreamInfo {
    pb::StreamInfo { scope: scope.to_owned(), stream: stream.to_owned(), access_operation: 0 }
}

/// A request's segment: `(scope, stream, id)`. A negative id is INVALID_ARGUMENT.
pub fn segment_of(req: &pb::SegmentId) -> Result<(String, String, SegmentId), Status> {
    let (scope, stream) = stream_of(req.stream_info.as_ref())?;
    let id = u64::try_from(req.segment_id)
        .map_err(|_| Status::invalid_argument(format!("segment id {} is negative", req.segment_id)))?;
    Ok((scope, stream, SegmentId::from_packed(id)))
}

/// The `SegmentId` of segment `id` of `scope/stream`.
pub fn segment_id(scope: &str, stream: &str, id: u64) -> pb::SegmentId {
    pb::SegmentId { stream_info: Some(stream_info(scope, stream)), segment_id: id as i64 }
}

/// A key range's upper end as the client gets it: the end of the key space is exactly 1.0
/// (the client asserts the largest `maxKey` is in `[1.0, 1.0001)`).
pub fn max_key(high: f64) -> f64 {
    if high >= 1.0 - 1e-12 { 1.0 } else { high }
}

/// A `SegmentRange` of segment `id` over `[low, high)`.
pub fn segment_range(scope: &str, stream: &str, id: u64, low: f64, high: f64) -> pb::SegmentRange {
    pb::SegmentRange { segment_id: Some(segment_id(scope, stream, id)), min_key: low, max_key: max_key(high) }
}

/// The `SegmentRanges` of a set of Nadi segments.
pub fn segment_ranges(scope: &str, stream: &str, segments: &[npb::Segment]) -> pb::SegmentRanges {
    let mut segments: Vec<&npb::Segment> = segments.iter().collect();
    segments.sort_by(|a, b| a.key_low.total_cmp(&b.key_low));
    pb::SegmentRanges {
        segment_ranges: segments.iter().map(|s| segment_range(scope, stream, s.id, s.key_low, s.key_high)).collect(),
        delegation_token: String::new(),
    }
}

/// A non-negative `i32` of a request as `u32`.
fn non_negative(what: &str, v: i32) -> Result<u32, Status> {
    u32::try_from(v).map_err(|_| Status::invalid_argument(format!("{what} {v} is negative")))
}

/// A Pravega stream config as Nadi's. Absent policies: one fixed segment, keep everything.
/// Tags are not kept (docs/pravega-compat.md). Bad values are INVALID_ARGUMENT here or from
/// Nadi (a rate policy needs a target rate > 0, a scale factor ≥ 2 and at least one segment).
pub fn config_to_nadi(c: &pb::StreamConfig) -> Result<npb::StreamConfig, Status> {
    use npb::retention_policy::Kind as R;
    use npb::scaling_policy::Kind as K;
    use pb::retention_policy::RetentionPolicyType as PR;
    use pb::scaling_policy::ScalingPolicyType as PS;
    let scaling = match &c.scaling_policy {
        None => npb::ScalingPolicy { kind: K::FixedUnspecified as i32, min_segments: 1, ..Default::default() },
        Some(p) => {
            let kind = match PS::try_from(p.scale_type) {
                Ok(PS::FixedNumSegments) => K::FixedUnspecified,
                Ok(PS::ByRateInEventsPerSec) => K::EventsPerSec,
                Ok(PS::ByRateInKbytesPerSec) => K::KbytesPerSec,
                Err(_) => return Err(Status::invalid_argument(format!("unknown scaleType {}", p.scale_type))),
            };
            let min_segments = non_negative("minNumSegments", p.min_num_segments)?;
            if kind == K::FixedUnspecified {
                npb::ScalingPolicy { kind: kind as i32, target_rate: 0, scale_factor: 0, min_segments }
            } else {
                npb::ScalingPolicy {
                    kind: kind as i32,
                    target_rate: non_negative("targetRate", p.target_rate)?,
                    scale_factor: non_negative("scaleFactor", p.scale_factor)?,
                    min_segments,
                }
            }
        }
    };
    let retention = match &c.retention_policy {
        None => None,
        Some(p) => {
            let value = u64::try_from(p.retention_param)
                .map_err(|_| Status::invalid_argument(format!("retentionParam {} is negative", p.retention_param)))?;
            match PR::try_from(p.retention_type) {
                Ok(PR::Unknown) => Some(npb::RetentionPolicy { kind: R::NoneUnspecified as i32, ..Default::default() }),
                Ok(PR::Time) => Some(npb::RetentionPolicy { kind: R::Time as i32, value, max_value: 0 }),
                Ok(PR::Size) => Some(npb::RetentionPolicy { kind: R::Size as i32, value, max_value: 0 }),
                Err(_) => return Err(Status::invalid_argument(format!("unknown retentionType {}", p.retention_type))),
            }
        }
    };
    Ok(npb::StreamConfig { scaling: Some(scaling), retention: retention.or(Some(Default::default())) })
}

/// A Nadi stream's config as Pravega's, with `streamInfo` and a valid `scalingPolicy` always
/// set (the client unwraps both and panics on an unknown `scaleType`); no tags.
pub fn config_to_pravega(scope: &str, stream: &str, c: Option<&npb::StreamConfig>) -> pb::StreamConfig {
    use npb::retention_policy::Kind as R;
    use npb::scaling_policy::Kind as K;
    use pb::retention_policy::RetentionPolicyType as PR;
    use pb::scaling_policy::ScalingPolicyType as PS;
    let sp = c.and_then(|c| c.scaling).unwrap_or_default();
    let to_i32 = |v: u32| i32::try_from(v).unwrap_or(i32::MAX);
    let scaling = match K::try_from(sp.kind) {
        Ok(K::EventsPerSec) => pb::ScalingPolicy {
            scale_type: PS::ByRateInEventsPerSec as i32,
            target_rate: to_i32(sp.target_rate),
            scale_factor: to_i32(sp.scale_factor),
            min_num_segments: to_i32(sp.min_segments),
        },
        Ok(K::KbytesPerSec) => pb::ScalingPolicy {
            scale_type: PS::ByRateInKbytesPerSec as i32,
            target_rate: to_i32(sp.target_rate),
            scale_factor: to_i32(sp.scale_factor),
            min_num_segments: to_i32(sp.min_segments),
        },
        _ => pb::ScalingPolicy {
            scale_type: PS::FixedNumSegments as i32,
            target_rate: 0,
            scale_factor: 0,
            min_num_segments: to_i32(sp.min_segments.max(1)),
        },
    };
    let rp = c.and_then(|c| c.retention).unwrap_or_default();
    let param = i64::try_from(rp.value).unwrap_or(i64::MAX);
    let retention = match R::try_from(rp.kind) {
        Ok(R::Time) => Some((PR::Time, param)),
        Ok(R::Size) => Some((PR::Size, param)),
        _ => None,
    };
    pb::StreamConfig {
        stream_info: Some(stream_info(scope, stream)),
        scaling_policy: Some(scaling),
        retention_policy: retention.map(|(kind, param)| pb::RetentionPolicy {
            retention_type: kind as i32,
            retention_param: param,
            retention_max: i64::MAX,
        }),
        tags: None,
    }
}

/// Nadi's stable code of a client error (local failures, which have none, by their kind).
pub fn code_of(e: &ClientError) -> ErrorCode {
    e.code.unwrap_or(match e.kind {
        ErrorKind::NotFound => ErrorCode::StreamNotFound,
        ErrorKind::AlreadyExists => ErrorCode::StreamExists,
        ErrorKind::Sealed => ErrorCode::Sealed,
        ErrorKind::Invalid => ErrorCode::InvalidArgument,
        ErrorKind::Unavailable => ErrorCode::Unavailable,
        ErrorKind::Unauthenticated => ErrorCode::Unauthenticated,
        ErrorKind::PermissionDenied => ErrorCode::PermissionDenied,
        _ => ErrorCode::Internal,
    })
}

/// A failure with no status-enum value, as the gRPC status Nadi itself gives for it (its code
/// in the details, so Nadi-aware tools see the reason; the Pravega client sees the gRPC code).
pub fn status(e: ClientError) -> Status {
    let code = code_of(&e);
    if !code.is_retryable() && code != ErrorCode::Internal {
        tracing::debug!(error = %e.message, ?code, "a Pravega controller call failed");
    } else {
        tracing::warn!(error = %e.message, ?code, "a Pravega controller call failed");
    }
    nadi_proto::errors::to_status(code, e.message, HashMap::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_round_trip_and_bad_ones_are_refused() {
        use pb::retention_policy::RetentionPolicyType as PR;
        use pb::scaling_policy::ScalingPolicyType as PS;
        let by_events = pb::StreamConfig {
            stream_info: Some(stream_info("s", "t")),
            scaling_policy: Some(pb::ScalingPolicy {
                scale_type: PS::ByRateInEventsPerSec as i32,
                target_rate: 100,
                scale_factor: 2,
                min_num_segments: 3,
            }),
            retention_policy: Some(pb::RetentionPolicy {
                retention_type: PR::Time as i32,
                retention_param: 60_000,
                retention_max: i64::MAX,
            }),
            tags: None,
        };
        let nadi = config_to_nadi(&by_events).unwrap();
        assert_eq!(config_to_pravega("s", "t", Some(&nadi)), by_events);
        let fixed = pb::StreamConfig {
            scaling_policy: Some(pb::ScalingPolicy {
                scale_type: PS::FixedNumSegments as i32,
                target_rate: 0,
                scale_factor: 0,
                min_num_segments: 4,
            }),
            retention_policy: Some(pb::RetentionPolicy { retention_type: PR::Unknown as i32, ..Default::default() }),
            ..by_events.clone()
        };
        let back = config_to_pravega("s", "t", Some(&config_to_nadi(&fixed).unwrap()));
        assert_eq!(back.scaling_policy, fixed.scaling_policy);
        assert_eq!(back.retention_policy, None, "keep everything has no policy");
        // Absent config: one fixed segment.
        let bare = pb::StreamConfig { stream_info: Some(stream_info("s", "t")), ..Default::default() };
        let back = config_to_pravega("s", "t", Some(&config_to_nadi(&bare).unwrap()));
        assert_eq!(back.scaling_policy.unwrap().min_num_segments, 1);
        for bad in [
            pb::ScalingPolicy { scale_type: 9, ..Default::default() },
            pb::ScalingPolicy { min_num_segments: -1, ..Default::default() },
            pb::ScalingPolicy { scale_type: 2, target_rate: -5, scale_factor: 2, min_num_segments: 1 },
        ] {
            let c = pb::StreamConfig { scaling_policy: Some(bad), ..bare.clone() };
            assert_eq!(config_to_nadi(&c).unwrap_err().code(), tonic::Code::InvalidArgument);
        }
        let c = pb::StreamConfig {
            retention_policy: Some(pb::RetentionPolicy { retention_type: 1, retention_param: -1, retention_max: 0 }),
            ..bare
        };
        assert_eq!(config_to_nadi(&c).unwrap_err().code(), tonic::Code::InvalidArgument);
        // Whatever Nadi holds, the client can read it back.
        let odd =
            npb::StreamConfig { scaling: Some(npb::ScalingPolicy { kind: 77, ..Default::default() }), retention: None };
        assert_eq!(config_to_pravega("s", "t", Some(&odd)).scaling_policy.unwrap().scale_type, 0);
    }

    #[test]
    fn the_key_space_ends_at_one() {
        assert_eq!(max_key(1.0), 1.0);
        assert_eq!(max_key(0.999_999_999_999_9), 1.0);
        assert_eq!(max_key(0.5), 0.5);
        let segs = [
            npb::Segment { id: 1, key_low: 0.5, key_high: 1.0, ..Default::default() },
            npb::Segment { id: 0, key_low: 0.0, key_high: 0.5, ..Default::default() },
        ];
        let r = segment_ranges("s", "t", &segs);
        assert_eq!(r.segment_ranges[0].segment_id.as_ref().unwrap().segment_id, 0);
        assert_eq!(r.segment_ranges[1].max_key, 1.0);
        assert!(r.segment_ranges.iter().all(|r| r.segment_id.as_ref().unwrap().stream_info.is_some()));
    }
}
