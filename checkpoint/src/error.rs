//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong in a dump or a restore.
///
/// The message of each variant names the object it is about (a pid, an fd, a path, a record), so
/// one line is enough to tell a user what failed and where.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A part of the tree cannot be checkpointed (checked before anything is frozen).
    #[error("pid {pid}: {what}: not supported")]
    Unsupported {
        /// The process that holds the object.
        pid: i32,
        /// The object and its kind, e.g. `fd 7 is a TCP socket`.
        what: String,
    },
    /// The image is truncated, corrupt, of another version, or does not fit this machine.
    #[error("image {path}: {what}")]
    BadImage {
        /// The image file (or `<stream>`) the fault was found in.
        path: String,
        /// What is wrong.
        what: String,
    },
    /// A system call on a process failed.
    #[error("pid {pid}: {what}: {error}")]
    Process {
        /// The process or thread id.
        pid: i32,
        /// The operation that failed.
        what: String,
        /// The error the kernel gave (part of the message, so not chained as a source).
        error: std::io::Error,
    },
    /// An I/O error on a file of the image or of the process.
    #[error("{}: {error}", path.display())]
    Io {
        /// The path that was read or written.
        path: PathBuf,
        /// The error (part of the message, so not chained as a source).
        error: std::io::Error,
    },
    /// The image asks for more than the restore may give (see [`crate::restore::Bound`]).
    #[error("image process {pid} asks for {what}: refused")]
    Exceeds {
        /// The process of the image.
        pid: i32,
        /// What it asks for.
        what: String,
    },
    /// The state on this machine does not allow the restore (pid taken, file changed, ...).
    #[error("{0}")]
    Conflict(String),
}

/// Result with the crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// The process the error is about, if it names one.
    pub fn pid(&self) -> Option<i32> {
        match self {
            Error::Unsupported { pid, .. } | Error::Process { pid, .. } => Some(*pid),
            _ => None,
        }
    }

    /// A failed system call on `pid` doing `what`.
    pub(crate) fn sys(
        pid: i32,
        what: impl Into<String>,
        source: impl Into<std::io::Error>,
    ) -> Self {
        Error::Process {
            pid,
            what: what.into(),
            error: source.into(),
        }
    }

    /// An I/O error naming `path`.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            error: source,
        }
    }

    /// An error of the procfs crate reading `path`.
    pub(crate) fn procfs(path: impl Into<PathBuf>, source: procfs::ProcError) -> Self {
        Error::io(path, std::io::Error::other(source.to_string()))
    }

    /// An unsupported object in process `pid`.
    pub(crate) fn unsupported(pid: i32, what: impl Into<String>) -> Self {
        Error::Unsupported {
            pid,
            what: what.into(),
        }
    }

    /// A bad image part.
    pub(crate) fn bad_image(path: impl Into<String>, what: impl Into<String>) -> Self {
        Error::BadImage {
            path: path.into(),
            what: what.into(),
        }
    }
}
