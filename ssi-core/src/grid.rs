//! Administration requests of the grid services (`ssi vo ...`), carried on the control socket.

use serde::{Deserialize, Serialize};

/// A VO administration request; root only. Answered by `ControlResponse::Grid` with the VO
/// (or VOs) as JSON text, or by `Error`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum GridAdmin {
    /// Create a VO (its members may use the `default` queue).
    VoCreate {
        /// Its name.
        name: String,
    },
    /// Delete a VO.
    VoDelete {
        /// Its name.
        name: String,
    },
    /// Every VO.
    VoList,
    /// One VO.
    VoShow {
        /// Its name.
        name: String,
    },
    /// Add a user (certificate subject) to a VO, or give a member a group or role.
    VoAddUser {
        /// The VO.
        vo: String,
        /// The user's certificate subject (`/O=Grid/CN=Alice`).
        subject: String,
        /// A group of the VO (`prod/sim`).
        group: Option<String>,
        /// A role (`admin` makes a VO administrator).
        role: Option<String>,
    },
    /// Remove a user from a VO, or take a group or role away.
    VoRemoveUser {
        /// The VO.
        vo: String,
        /// The user's certificate subject.
        subject: String,
        /// Only this group.
        group: Option<String>,
        /// Only this role.
        role: Option<String>,
    },
    /// Set the queues a VO's members may submit to.
    VoQueues {
        /// The VO.
        vo: String,
        /// Queue names.
        queues: Vec<String>,
    },
}
