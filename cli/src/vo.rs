//! `ssi vo ...`: the grid's virtual organisations (root; needs `[grid]` in ssid's config).

use std::path::Path;

use anyhow::{bail, Result};
use clap::Subcommand;
use ssi_core::control::{ControlRequest, ControlResponse};
use ssi_core::grid::GridAdmin;

/// VO commands.
#[derive(Debug, Subcommand)]
pub enum VoCommand {
    /// Create a VO (its members may submit to the `default` queue).
    Create {
        /// VO name.
        name: String,
    },
    /// Delete a VO.
    Delete {
        /// VO name.
        name: String,
    },
    /// List the VOs (JSON).
    List,
    /// Show a VO with its members and their FQANs (JSON).
    Show {
        /// VO name.
        name: String,
    },
    /// Add a user, by certificate subject, or give a member a group or role.
    AddUser {
        /// VO name.
        vo: String,
        /// Certificate subject, e.g. "/O=Grid/CN=Alice".
        subject: String,
        /// A group of the VO, e.g. prod/sim.
        #[arg(long)]
        group: Option<String>,
        /// A role; `admin` makes a VO administrator.
        #[arg(long)]
        role: Option<String>,
    },
    /// Remove a user, or only a group or role of theirs.
    RemoveUser {
        /// VO name.
        vo: String,
        /// Certificate subject.
        subject: String,
        /// Only this group.
        #[arg(long)]
        group: Option<String>,
        /// Only this role.
        #[arg(long)]
        role: Option<String>,
    },
    /// Set the queues the VO's members may submit to.
    Queues {
        /// VO name.
        vo: String,
        /// Queue names.
        queues: Vec<String>,
    },
}

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
    let ControlResponse::Grid(text) = crate::client::call(socket, ControlRequest::Grid(req)).await?
    else {
        bail!("ssid sent an unexpected answer to a VO request");
    };
    let v: serde_json::Value = serde_json::from_str(&text)?;
    Ok(serde_json::to_string_pretty(&v)?)
}
