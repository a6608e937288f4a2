//! The one error type of `grid-node`.
//!
//! Every variant says what failed and names the object (a VO, a subject, a field, a path). Unless
//! a variant says otherwise, the failed call changed nothing in the store.

use std::io;
use std::path::PathBuf;

/// Everything that can fail in the grid services.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A text that should be an FQAN (`/vo[/group...][/Role=r][/Capability=c]`) is not one.
    #[error("fqan {text:?}: {reason}")]
    Fqan {
        /// The text given.
        text: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A VO registry operation was refused (unknown VO, duplicate, unknown member ...).
    #[error("vo {vo}: {reason}")]
    Vo {
        /// The VO named by the request.
        vo: String,
        /// Why it was refused.
        reason: String,
    },
    /// A certificate or token could not be made, parsed or verified.
    #[error("credential: {0}")]
    Credential(String),
    /// A credential was valid once but has expired.
    #[error("credential of {subject} expired at {expired_at} (unix time); log in again")]
    Expired {
        /// Whose credential.
        subject: String,
        /// When it expired, in seconds since the epoch.
        expired_at: i64,
    },
    /// A subject is not issued by any trusted CA.
    #[error("{subject}: issuer {issuer} is not a trusted CA")]
    Untrusted {
        /// The certificate's subject.
        subject: String,
        /// The issuer it names.
        issuer: String,
    },
    /// The replicated store failed; the operation may or may not have been applied.
    #[error("store: {0}")]
    Store(String),
    /// No account could be leased or created.
    #[error("account pool of vo {vo}: {reason}")]
    Account {
        /// The VO whose pool was asked.
        vo: String,
        /// Why no account was had.
        reason: String,
    },
    /// A policy set or schema was refused, or a decision could not be made.
    #[error("policy: {0}")]
    Policy(String),
    /// A task or its request is invalid; `field` names the JSON field at fault.
    #[error("{field}: {reason}")]
    Invalid {
        /// The field (JSON path, e.g. `executors[0].command`).
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No task has that id.
    #[error("task {0}: not found")]
    NoSuchTask(String),
    /// The caller may not do this.
    #[error("{principal} may not {action} {resource}")]
    Denied {
        /// Who asked.
        principal: String,
        /// What they asked to do.
        action: String,
        /// On what.
        resource: String,
    },
    /// A requirement expression (`cores>=64 && mem_gb>=128`) does not parse.
    #[error("requirement {text:?} at byte {at}: {reason}")]
    Requirement {
        /// The expression.
        text: String,
        /// Where the parser stopped.
        at: usize,
        /// What it expected.
        reason: String,
    },
    /// Running an executor failed.
    #[error("runner: {0}")]
    Runner(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the kernel said.
        source: io::Error,
    },
}

impl Error {
    /// An [`Error::Io`] naming `path`.
    pub fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// An [`Error::Invalid`] for `field`.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
