//! `ssi vo ...`: VO administration on the control socket, root only.

use anyhow::{bail, Result};
use grid_node::vo::VoRegistry;
use ssi_core::control::ControlResponse;
use ssi_core::grid::GridAdmin;
use ssi_core::process::Caller;

use crate::Node;

/// Carries out `req` for `caller` on the replicated VO registry.
pub async fn answer(node: &Node, req: GridAdmin, caller: &Caller) -> Result<ControlResponse> {
    if caller.uid != 0 {
        bail!("administering VOs needs root");
    }
    let Some(grid) = node.grid.get() else {
        bail!(
            "node {}: the grid services are not configured (no [grid] table)",
            node.config.id
        );
    };
    let vos = VoRegistry::new(&*grid.store);
    let json = match req {
        GridAdmin::VoCreate { name } => serde_json::to_string(&vos.create(&name).await?)?,
        GridAdmin::VoDelete { name } => {
            vos.delete(&name).await?;
            "{}".to_string()
        }
        GridAdmin::VoList => serde_json::to_string(&vos.list().await?)?,
        GridAdmin::VoShow { name } => serde_json::to_string(&vos.show(&name).await?)?,
        GridAdmin::VoAddUser {
            vo,
            subject,
            group,
            role,
        } => serde_json::to_string(
            &vos.add_user(&vo, &subject, group.as_deref(), role.as_deref())
                .await?,
        )?,
        GridAdmin::VoRemoveUser {
            vo,
            subject,
            group,
            role,
        } => {
            vos.remove_user(&vo, &subject, group.as_deref(), role.as_deref())
                .await?;
            "{}".to_string()
        }
        GridAdmin::VoQueues { vo, queues } => {
            let q: Vec<&str> = queues.iter().map(String::as_str).collect();
            serde_json::to_string(&vos.set_queues(&vo, &q).await?)?
        }
    };
    tracing::info!(target: "grid::admin", uid = caller.uid, "VO registry changed or read");
    Ok(ControlResponse::Grid(json))
}
