//! The conformance suite (being built).
