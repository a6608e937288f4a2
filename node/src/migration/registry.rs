//! The migrations this node takes part in, by attempt: where a message about one goes (the
//! task that drives its machine), and the highest epoch seen of each tree, so that a stale or
//! repeated offer is refused.

use std::collections::HashMap;
use std::sync::Mutex;

use anyhow::{bail, Result};
use migrate::protocol::{answer_unknown, MigrationId, MigrationMsg, SourceEvent, TargetEvent};
use migrate::Report;
use tokio::sync::{mpsc, oneshot};

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// How long a message waits for the machine's answer.
const ANSWER_WITHIN: std::time::Duration = std::time::Duration::from_secs(4);

/// What the task driving one machine is given.
#[derive(Debug)]
pub enum Input<E> {
    /// An event of the machine.
    Event(E),
    /// A message from the other daemon, with where its answer goes.
    Message(MigrationMsg, oneshot::Sender<Option<MigrationMsg>>),
    /// A report of the helper.
    Report(Report),
    /// The helper's control socket closed.
    HelperGone,
}

/// Where the inputs of one driving task go.
pub type Inbox<E> = mpsc::Sender<Input<E>>;

#[derive(Debug, Default)]
struct Inner {
    sources: HashMap<MigrationId, Inbox<SourceEvent>>,
    targets: HashMap<MigrationId, Inbox<TargetEvent>>,
    /// Highest epoch seen of each tree, by root.
    seen: HashMap<i32, u64>,
}

/// The migrations of this node (see the module doc).
#[derive(Debug, Default)]
pub struct Migrations {
    inner: Mutex<Inner>,
}

impl Migrations {
    /// A migration away from here begins.
    pub fn add_source(&self, id: MigrationId, inbox: Inbox<SourceEvent>) {
        let mut m = lock(&self.inner);
        let seen = m.seen.entry(id.gpid).or_default();
        *seen = (*seen).max(id.epoch);
        m.sources.insert(id, inbox);
    }

    /// A migration to here begins, unless this node has seen the tree under this epoch or a
    /// later one.
    pub fn add_target(&self, id: MigrationId, inbox: Inbox<TargetEvent>) -> Result<()> {
        let mut m = lock(&self.inner);
        let seen = m.seen.entry(id.gpid).or_default();
        if *seen >= id.epoch {
            bail!(
                "stale offer: process {} was already seen here under epoch {}",
                id.gpid,
                seen
            );
        }
        *seen = id.epoch;
        m.targets.insert(id, inbox);
        Ok(())
    }

    /// The task driving `id` is over.
    pub fn remove(&self, id: MigrationId) {
        let mut m = lock(&self.inner);
        m.sources.remove(&id);
        m.targets.remove(&id);
    }

    /// Hands `msg` about `id` to the task that drives it here and waits for its answer; one
    /// this node knows nothing of is answered by `answer_unknown` (`my_run`: this node's
    /// run).
    pub async fn deliver(
        &self,
        id: MigrationId,
        msg: MigrationMsg,
        my_run: u64,
    ) -> Option<MigrationMsg> {
        let (tx, rx) = oneshot::channel();
        let sent = {
            let m = lock(&self.inner);
            if let Some(s) = m.sources.get(&id) {
                s.try_send(Input::Message(msg.clone(), tx)).is_ok()
            } else if let Some(t) = m.targets.get(&id) {
                t.try_send(Input::Message(msg.clone(), tx)).is_ok()
            } else {
                false
            }
        };
        if !sent {
            return answer_unknown(id, my_run, &msg);
        }
        // within the asker's patience (`peer::ask`); a message that gets no answer is
        // answered by nothing, and the asker asks again
        tokio::time::timeout(ANSWER_WITHIN, rx)
            .await
            .ok()
            .and_then(Result::ok)
            .flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offer_of_an_epoch_already_seen_is_refused() {
        let m = Migrations::default();
        let id = |epoch| MigrationId {
            gpid: 4100,
            epoch,
            source_run: 1,
        };
        let (tx, _rx) = mpsc::channel(1);
        m.add_target(id(5), tx.clone()).expect("first");
        assert!(m.add_target(id(5), tx.clone()).is_err(), "repeated");
        assert!(m.add_target(id(4), tx.clone()).is_err(), "older");
        m.remove(id(5));
        m.add_target(id(6), tx).expect("a later attempt");
    }
}
