//! `nadi-proto`: the wire contract shared by every Nadi process and client.
//!
//! - [`controller::v1`] and [`segment::v1`]: generated tonic/prost code of the versioned gRPC
//!   packages `nadi.controller.v1` and `nadi.segment.v1` (the `.proto` files under `proto/` are
//!   the documented source of truth; the Java connector generates from the same files).
//! - [`SegmentId`]: the packed `(epoch << 32) | number` segment id, and [`names`]: scope, stream
//!   and qualified segment names.
//! - [`routing`]: the one stable hash from routing keys to the key space `[0, 1)`.
//! - [`framing`]: how events are framed inside a segment, and the maximum event size.
//! - [`errors`]: stable error codes carried in gRPC status details.
//! - [`clock`]: the clock of append times (with a test hook).

pub mod clock;
pub mod errors;
pub mod framing;
pub mod ids;
pub mod names;
pub mod routing;
pub mod views;

pub use errors::ErrorCode;
pub use ids::SegmentId;

/// gRPC metadata key of a controller request's idempotency key: a client sends a fresh value
/// (at most [`MAX_REQUEST_ID_LEN`] visible ASCII characters) with each logical request and the
/// same value on every retry of it. The controller applies a mutating request at most once per
/// key and answers a retry with the outcome it recorded (see `docs/protocol.md`). Requests
/// without it are applied as they come, as before the key existed.
pub const REQUEST_ID_HEADER: &str = "x-nadi-request-id";

/// Longest request id accepted, in bytes.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// Generated code of `nadi.controller.v1`.
pub mod controller {
    /// Version 1 of the controller API.
    pub mod v1 {
        #![allow(missing_debug_implementations, clippy::all)]
        tonic::include_proto!("nadi.controller.v1");
    }
}

/// Generated code of `nadi.segment.v1`.
pub mod segment {
    /// Version 1 of the segment store data plane.
    pub mod v1 {
        #![allow(missing_debug_implementations, clippy::all)]
        tonic::include_proto!("nadi.segment.v1");
    }
}

/// Generated code of `nadi.replica.v1`: internal RPCs between segment stores (the Raft groups of
/// replicated containers). Not a client API.
pub mod replica {
    /// Version 1 of the internal replication protocol.
    pub mod v1 {
        #![allow(missing_debug_implementations, clippy::all)]
        tonic::include_proto!("nadi.replica.v1");
    }
}

/// Generated code of `nadi.raft.v1`: internal RPCs between controller nodes (Raft) and the
/// registration of segment stores. Not a client API.
pub mod raft {
    /// Version 1 of the internal controller protocol.
    pub mod v1 {
        #![allow(missing_debug_implementations, clippy::all)]
        tonic::include_proto!("nadi.raft.v1");
    }
}
