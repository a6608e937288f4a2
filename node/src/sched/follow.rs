//! The placement index follows the cluster view: every [`EVERY`] it takes in what gossip
//! brought, so that a placement decision needs neither the view nor a scan of it.

use std::sync::Arc;
use std::time::Duration;

use crate::node::Node;

/// How often the placement index takes in the cluster view.
const EVERY: Duration = Duration::from_millis(200);

/// Feeds `node`'s placement index the cluster view for as long as the membership task runs.
pub async fn run(node: Arc<Node>) {
    let mut tick = tokio::time::interval(EVERY);
    loop {
        tick.tick().await;
        match node.gossip.view().await {
            Ok(view) => node.sched.sync(&view),
            Err(_) => return,
        }
    }
}
