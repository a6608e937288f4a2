//! Checkpoint and restore of process trees with ptrace and /proc.
