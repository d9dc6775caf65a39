//! Pravega's controller API over Nadi's controller (to be built).
