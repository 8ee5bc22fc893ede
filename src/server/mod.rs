//! The accept loop, per-connection options, graceful shutdown and task tracking.
