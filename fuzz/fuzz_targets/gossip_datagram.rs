//! A gossip payload as the membership core receives it once its datagram passed the HMAC
//! (what a cluster key holder could send), and the datagram envelope itself (what anyone on
//! the network can send).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use ssi_core::auth::{ClusterKey, Datagrams};
use ssi_core::config::{ConfigLayer, GossipConfig};
use ssi_core::membership::Membership;
use ssi_core::{NodeId, NodeIdentity};

fn config() -> &'static GossipConfig {
    static C: OnceLock<GossipConfig> = OnceLock::new();
    C.get_or_init(|| {
        let text = "id = 1\nlisten = \"127.0.0.1:7700\"\n";
        let layer = ConfigLayer::from_toml(text, "fuzz.toml".as_ref()).expect("config");
        layer.resolve().expect("resolve").gossip
    })
}

fuzz_target!(|data: &[u8]| {
    let me = NodeIdentity {
        id: NodeId(1),
        addr: "127.0.0.1:7700".parse().expect("addr"),
        gen: 1,
    };
    let rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(7);
    let mut core = Membership::new(me, "n1".into(), config(), rng);
    let _ = core.handle_packet(data);
    let _ = core.drain().count();
    let key = ClusterKey::from_bytes(&[7u8; 32]).expect("key");
    let _ = Datagrams::new(key).open(data);
});
