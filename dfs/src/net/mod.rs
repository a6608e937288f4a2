//! The DFS service between nodes: its messages, the authenticated connection they travel on,
//! and a pool of connections to peers.
//!
//! Each node's DFS listens on its own TCP port, the daemon's port plus [`PORT_OFFSET`], so
//! that raft and chunk traffic never waits behind the daemon's other requests.

pub mod client;
pub mod conn;
pub mod proto;

/// The DFS service listens on the daemon's port plus this.
pub const PORT_OFFSET: u16 = 1;
