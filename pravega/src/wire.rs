//! Pravega's segment-store wire protocol (to be built).
