//! `ssi vo ...`: the grid's virtual organisations (root; needs `[grid]` in ssid's config).

use std::path::Path;

use anyhow::{bail, Result};
use ssi_cli::args::VoCommand;
use ssi_core::control::{ControlRequest, ControlResponse};
use ssi_core::grid::GridAdmin;

/// Sends the VO command to the daemon; returns its answer (pretty JSON).
pub async fn vo(socket: &Path, command: VoCommand) -> Result<String> {
    let req = match command {
        VoCommand::Create { name } => GridAdmin::VoCreate { name },
        VoCommand::Delete { name } => GridAdmin::VoDelete { name },
        VoCommand::List => GridAdmin::VoList,
        VoCommand::Show { name } => GridAdmin::VoShow { name },
        VoCommand::AddUser {
            vo,
            subject,
            group,
            role,
        } => GridAdmin::VoAddUser {
            vo,
            subject,
            group,
            role,
        },
        VoCommand::RemoveUser {
            vo,
            subject,
            group,
            role,
        } => GridAdmin::VoRemoveUser {
            vo,
            subject,
            group,
            role,
        },
        VoCommand::Queues { vo, queues } => GridAdmin::VoQueues { vo, queues },
    };
    let ControlResponse::Grid(text) =
        crate::client::call(socket, ControlRequest::Grid(req)).await?
    else {
        bail!("ssid sent an unexpected answer to a VO request");
    };
    let v: serde_json::Value = serde_json::from_str(&text)?;
    Ok(serde_json::to_string_pretty(&v)?)
}
