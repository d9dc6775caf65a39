//! The controller's metadata state machine.
//!
//! Invariants kept by [`ControllerState::apply`]:
//! - the active segments of a stream exactly cover the key space `[0, 1)`, without overlap;
//! - segment numbers are unique within a stream across all epochs, ids are `(epoch << 32) | number`;
//! - a stream in `Creating` state is invisible to list/get until its segments exist;
//! - `apply` is deterministic: commands carry their own timestamps.

use std::collections::BTreeMap;

use nadi_proto::SegmentId;
use nadi_proto::routing::split_range;
use serde::{Deserialize, Serialize};

use crate::MetaError;

/// How a stream scales. Mirrors `nadi.controller.v1.ScalingPolicy`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Scaling {
    Fixed { segments: u32 },
    EventsPerSec { rate: u32, factor: u32, min_segments: u32 },
    KbytesPerSec { rate: u32, factor: u32, min_segments: u32 },
}

impl Scaling {
    /// Segments of the first epoch.
    pub fn initial_segments(&self) -> u32 {
        match *self {
            Scaling::Fixed { segments } => segments,
            Scaling::EventsPerSec { min_segments, .. } | Scaling::KbytesPerSec { min_segments, .. } => min_segments,
        }
    }
}

/// How long data is kept. Mirrors `nadi.controller.v1.RetentionPolicy`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Retention {
    None,
    TimeMs(u64),
    Bytes(u64),
}

/// A stream's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamConfig {
    pub scaling: Scaling,
    pub retention: Retention,
}

/// Largest number of segments a stream may be created with.
pub const MAX_INITIAL_SEGMENTS: u32 = 1024;

/// Lifecycle of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StreamState {
    Creating,
    Active,
    Sealed,
}

/// One segment's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentRecord {
    pub id: SegmentId,
    pub key_low: f64,
    pub key_high: f64,
    pub created_at_ms: u64,
    pub sealed: bool,
    pub predecessors: Vec<SegmentId>,
    pub successors: Vec<SegmentId>,
}

/// One epoch: the set of segments active between two scaling events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Epoch {
    pub epoch: u32,
    pub created_at_ms: u64,
    pub segments: Vec<SegmentId>,
}

/// A stream's metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamMeta {
    pub config: StreamConfig,
    pub state: StreamState,
    pub created_at_ms: u64,
    pub epochs: Vec<Epoch>,
    /// All segments ever, by number.
    pub segments: BTreeMap<u32, SegmentRecord>,
}

impl StreamMeta {
    /// The current epoch.
    pub fn current_epoch(&self) -> &Epoch {
        self.epochs.last().expect("a stream always has its first epoch")
    }

    /// The active segments, sorted by key range.
    pub fn active_segments(&self) -> Vec<&SegmentRecord> {
        let mut segs: Vec<_> =
            self.current_epoch().segments.iter().filter_map(|id| self.segments.get(&id.number())).collect();
        segs.sort_by(|a, b| a.key_low.total_cmp(&b.key_low));
        segs
    }

    /// A segment by id.
    pub fn segment(&self, id: SegmentId) -> Option<&SegmentRecord> {
        self.segments.get(&id.number()).filter(|s| s.id == id)
    }
}

/// A scope.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ScopeMeta {
    pub created_at_ms: u64,
    pub streams: BTreeMap<String, StreamMeta>,
}

/// A change to the metadata. Commands carry their own time so that applying is deterministic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    CreateScope {
        scope: String,
        now_ms: u64,
    },
    DeleteScope {
        scope: String,
    },
    /// Records a new stream in `Creating` state with its first epoch.
    CreateStream {
        scope: String,
        stream: String,
        config: StreamConfig,
        now_ms: u64,
    },
    /// The stream's segments exist on the segment stores: make it visible.
    StreamCreated {
        scope: String,
        stream: String,
    },
    /// Every active segment was sealed on the segment stores.
    StreamSealed {
        scope: String,
        stream: String,
    },
    /// Every segment was deleted on the segment stores.
    DeleteStream {
        scope: String,
        stream: String,
    },
}

/// The whole metadata.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ControllerState {
    pub scopes: BTreeMap<String, ScopeMeta>,
}

impl ControllerState {
    /// A scope by name.
    pub fn scope(&self, scope: &str) -> Result<&ScopeMeta, MetaError> {
        self.scopes.get(scope).ok_or_else(|| MetaError::ScopeNotFound(scope.to_owned()))
    }

    /// A stream by name, including one still being created.
    pub fn stream_any(&self, scope: &str, stream: &str) -> Result<&StreamMeta, MetaError> {
        self.scope(scope)?.streams.get(stream).ok_or_else(|| MetaError::StreamNotFound(format!("{scope}/{stream}")))
    }

    /// A visible (created) stream by name.
    pub fn stream(&self, scope: &str, stream: &str) -> Result<&StreamMeta, MetaError> {
        let s = self.stream_any(scope, stream)?;
        if s.state == StreamState::Creating {
            return Err(MetaError::StreamNotFound(format!("{scope}/{stream}")));
        }
        Ok(s)
    }

    fn stream_mut(&mut self, scope: &str, stream: &str) -> Result<&mut StreamMeta, MetaError> {
        self.scopes
            .get_mut(scope)
            .ok_or_else(|| MetaError::ScopeNotFound(scope.to_owned()))?
            .streams
            .get_mut(stream)
            .ok_or_else(|| MetaError::StreamNotFound(format!("{scope}/{stream}")))
    }

    /// Applies one command. On error the state is unchanged.
    pub fn apply(&mut self, cmd: &Command) -> Result<(), MetaError> {
        match cmd {
            Command::CreateScope { scope, now_ms } => {
                if self.scopes.contains_key(scope) {
                    return Err(MetaError::ScopeExists(scope.clone()));
                }
                self.scopes.insert(scope.clone(), ScopeMeta { created_at_ms: *now_ms, streams: BTreeMap::new() });
            }
            Command::DeleteScope { scope } => {
                if !self.scope(scope)?.streams.is_empty() {
                    return Err(MetaError::ScopeNotEmpty(scope.clone()));
                }
                self.scopes.remove(scope);
            }
            Command::CreateStream { scope, stream, config, now_ms } => {
                let n = config.scaling.initial_segments();
                if n == 0 || n > MAX_INITIAL_SEGMENTS {
                    return Err(MetaError::InvalidArgument(format!(
                        "a stream needs 1..={MAX_INITIAL_SEGMENTS} segments, not {n}"
                    )));
                }
                let s = self.scopes.get_mut(scope).ok_or_else(|| MetaError::ScopeNotFound(scope.clone()))?;
                if s.streams.contains_key(stream) {
                    return Err(MetaError::StreamExists(format!("{scope}/{stream}")));
                }
                let mut segments = BTreeMap::new();
                let mut ids = Vec::new();
                for (i, (low, high)) in split_range(0.0, 1.0, n).into_iter().enumerate() {
                    let id = SegmentId::new(0, i as u32);
                    ids.push(id);
                    segments.insert(
                        i as u32,
                        SegmentRecord {
                            id,
                            key_low: low,
                            key_high: high,
                            created_at_ms: *now_ms,
                            sealed: false,
                            predecessors: vec![],
                            successors: vec![],
                        },
                    );
                }
                s.streams.insert(
                    stream.clone(),
                    StreamMeta {
                        config: config.clone(),
                        state: StreamState::Creating,
                        created_at_ms: *now_ms,
                        epochs: vec![Epoch { epoch: 0, created_at_ms: *now_ms, segments: ids }],
                        segments,
                    },
                );
            }
            Command::StreamCreated { scope, stream } => {
                let s = self.stream_mut(scope, stream)?;
                if s.state == StreamState::Creating {
                    s.state = StreamState::Active;
                }
            }
            Command::StreamSealed { scope, stream } => {
                let s = self.stream_mut(scope, stream)?;
                s.state = StreamState::Sealed;
                let active: Vec<_> = s.current_epoch().segments.clone();
                for id in active {
                    if let Some(seg) = s.segments.get_mut(&id.number()) {
                        seg.sealed = true;
                    }
                }
            }
            Command::DeleteStream { scope, stream } => {
                if self.stream_any(scope, stream)?.state != StreamState::Sealed {
                    return Err(MetaError::StreamNotSealed(format!("{scope}/{stream}")));
                }
                if let Some(s) = self.scopes.get_mut(scope) {
                    s.streams.remove(stream);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(n: u32) -> StreamConfig {
        StreamConfig { scaling: Scaling::Fixed { segments: n }, retention: Retention::None }
    }

    #[test]
    fn create_stream_covers_the_key_space() {
        let mut st = ControllerState::default();
        st.apply(&Command::CreateScope { scope: "s".into(), now_ms: 1 }).unwrap();
        let create = Command::CreateStream { scope: "s".into(), stream: "t".into(), config: cfg(7), now_ms: 2 };
        st.apply(&create).unwrap();
        assert!(matches!(st.stream("s", "t"), Err(MetaError::StreamNotFound(_))), "invisible while creating");
        st.apply(&Command::StreamCreated { scope: "s".into(), stream: "t".into() }).unwrap();
        let segs = st.stream("s", "t").unwrap().active_segments();
        assert_eq!(segs.len(), 7);
        assert_eq!(segs[0].key_low, 0.0);
        assert_eq!(segs[6].key_high, 1.0);
        for w in segs.windows(2) {
            assert_eq!(w[0].key_high, w[1].key_low);
        }
        assert!(matches!(st.apply(&create), Err(MetaError::StreamExists(_))));
    }

    #[test]
    fn errors_leave_state_unchanged() {
        let mut st = ControllerState::default();
        let before = st.clone();
        assert!(
            st.apply(&Command::CreateStream { scope: "nope".into(), stream: "t".into(), config: cfg(1), now_ms: 0 })
                .is_err()
        );
        st.apply(&Command::CreateScope { scope: "s".into(), now_ms: 0 }).unwrap();
        let with_scope = st.clone();
        assert!(
            st.apply(&Command::CreateStream { scope: "s".into(), stream: "t".into(), config: cfg(0), now_ms: 0 })
                .is_err()
        );
        assert_eq!(st, with_scope);
        assert_ne!(st, before);
        st.apply(&Command::CreateStream { scope: "s".into(), stream: "t".into(), config: cfg(2), now_ms: 0 }).unwrap();
        assert!(matches!(st.apply(&Command::DeleteScope { scope: "s".into() }), Err(MetaError::ScopeNotEmpty(_))));
        assert!(matches!(
            st.apply(&Command::DeleteStream { scope: "s".into(), stream: "t".into() }),
            Err(MetaError::StreamNotSealed(_))
        ));
        st.apply(&Command::StreamSealed { scope: "s".into(), stream: "t".into() }).unwrap();
        st.apply(&Command::DeleteStream { scope: "s".into(), stream: "t".into() }).unwrap();
        st.apply(&Command::DeleteScope { scope: "s".into() }).unwrap();
        assert_eq!(st, before);
    }
}
