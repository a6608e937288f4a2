//! What members tell each other on top of SWIM: their probe data and their graceful leaves.
//!
//! Both ride foca's custom broadcasts (piggy-backed on protocol messages, each re-sent a bounded
//! number of times). A newer item from the same node replaces an older one still in flight.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use foca::{BroadcastHandler, Invalidates};
use serde::{Deserialize, Serialize};

use crate::node::NodeId;
use crate::probe::ProbeData;

/// One custom broadcast item.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Gossiped {
    /// A node's name and probe data; `seq` grows with each report of the same `gen`.
    Info {
        /// Reporting node.
        id: NodeId,
        /// Its identity generation.
        gen: u64,
        /// Report number.
        seq: u64,
        /// Node name.
        name: String,
        /// Probe figures.
        probe: ProbeData,
    },
    /// The node of identity (`id`, `gen`) leaves the cluster on purpose.
    Leave {
        /// Leaving node.
        id: NodeId,
        /// Generation that leaves.
        gen: u64,
    },
}

/// What identifies a broadcast item, to drop stale ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ItemKey {
    /// An info report.
    Info {
        /// Node.
        id: NodeId,
        /// (generation, report number).
        version: (u64, u64),
    },
    /// A leave notice.
    Leave {
        /// Node.
        id: NodeId,
        /// Generation.
        gen: u64,
    },
}

impl Invalidates for ItemKey {
    fn invalidates(&self, other: &Self) -> bool {
        match (self, other) {
            (ItemKey::Info { id: a, version: va }, ItemKey::Info { id: b, version: vb }) => {
                a == b && va > vb
            }
            (ItemKey::Leave { id: a, gen: ga }, ItemKey::Leave { id: b, gen: gb }) => {
                a == b && ga > gb
            }
            _ => false,
        }
    }
}

/// Latest info of one node.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeInfo {
    /// Generation of the report.
    pub gen: u64,
    /// Report number.
    pub seq: u64,
    /// Node name.
    pub name: String,
    /// Probe figures.
    pub probe: ProbeData,
}

/// What the broadcasts told us so far.
#[derive(Debug, Default)]
pub struct InfoStore {
    /// Latest info per node.
    pub info: HashMap<NodeId, NodeInfo>,
    /// Highest generation that left, per node.
    pub left: HashMap<NodeId, u64>,
    /// Leave notices not yet turned into events.
    pub new_leaves: Vec<(NodeId, u64)>,
}

impl InfoStore {
    /// Whether identity (`id`, `gen`) left on purpose.
    pub fn has_left(&self, id: NodeId, gen: u64) -> bool {
        self.left.get(&id) == Some(&gen)
    }
}

/// Error decoding a broadcast item.
#[derive(Debug, thiserror::Error)]
#[error("undecodable broadcast: {0}")]
pub struct DecodeError(#[from] postcard::Error);

/// The foca broadcast handler; shares its store with the [`super::Membership`] that owns it.
#[derive(Debug, Clone, Default)]
pub struct Handler {
    store: Arc<Mutex<InfoStore>>,
}

impl Handler {
    /// Locks the store; a poisoned lock only means a panic elsewhere, the data is still usable.
    pub fn store(&self) -> MutexGuard<'_, InfoStore> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl<T> BroadcastHandler<T> for Handler {
    type Key = ItemKey;
    type Error = DecodeError;

    fn receive_item(&mut self, data: &[u8], _sender: Option<&T>) -> Result<Option<ItemKey>, DecodeError> {
        let item: Gossiped = postcard::from_bytes(data)?;
        let mut store = self.store();
        Ok(match item {
            Gossiped::Info { id, gen, seq, name, probe } => {
                let fresh = store.info.get(&id).is_none_or(|old| (gen, seq) > (old.gen, old.seq));
                if !fresh {
                    return Ok(None);
                }
                store.info.insert(id, NodeInfo { gen, seq, name, probe });
                Some(ItemKey::Info { id, version: (gen, seq) })
            }
            Gossiped::Leave { id, gen } => {
                if store.left.get(&id).is_some_and(|&g| g >= gen) {
                    return Ok(None);
                }
                store.left.insert(id, gen);
                store.new_leaves.push((id, gen));
                Some(ItemKey::Leave { id, gen })
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(seq: u64) -> Vec<u8> {
        postcard::to_stdvec(&Gossiped::Info {
            id: NodeId(2),
            gen: 5,
            seq,
            name: "n2".into(),
            probe: ProbeData::default(),
        })
        .expect("encode")
    }

    #[test]
    fn newer_info_replaces_older_and_stale_is_dropped() {
        let mut h = Handler::default();
        let k2 = BroadcastHandler::<()>::receive_item(&mut h, &info(2), None).expect("ok");
        assert!(k2.is_some());
        let k1 = BroadcastHandler::<()>::receive_item(&mut h, &info(1), None).expect("ok");
        assert!(k1.is_none(), "older report must not be spread again");
        let k3 = BroadcastHandler::<()>::receive_item(&mut h, &info(3), None)
            .expect("ok")
            .expect("fresh");
        assert!(k3.invalidates(&k2.expect("key")));
        assert_eq!(h.store().info[&NodeId(2)].seq, 3);
    }

    #[test]
    fn leave_is_recorded_once() {
        let mut h = Handler::default();
        let bytes = postcard::to_stdvec(&Gossiped::Leave { id: NodeId(4), gen: 9 }).expect("encode");
        assert!(BroadcastHandler::<()>::receive_item(&mut h, &bytes, None).expect("ok").is_some());
        assert!(BroadcastHandler::<()>::receive_item(&mut h, &bytes, None).expect("ok").is_none());
        assert!(h.store().has_left(NodeId(4), 9));
        assert!(!h.store().has_left(NodeId(4), 10));
    }

    #[test]
    fn garbage_is_an_error() {
        let mut h = Handler::default();
        assert!(BroadcastHandler::<()>::receive_item(&mut h, &[0xff, 0xff, 0xff], None).is_err());
    }
}
