//! A scripted, recording runtime for tests and simulated nodes (to be written).
