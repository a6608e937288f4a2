//! Connections to other nodes' DFS services, kept open and reused.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use ssi_core::tls::TlsContext;

use super::conn::Conn;
use super::proto::{Request, Response};
use crate::error::{Error, Result};

/// Idle connections kept per peer.
const IDLE_PER_PEER: usize = 8;

/// The DFS services of the other nodes.
#[derive(Debug)]
pub struct Peers {
    key: TlsContext,
    addrs: Mutex<HashMap<u16, SocketAddr>>,
    idle: Mutex<HashMap<u16, Vec<Conn>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Peers {
    /// No peers known yet.
    pub fn new(key: TlsContext) -> Peers {
        Peers {
            key,
            addrs: Mutex::default(),
            idle: Mutex::default(),
        }
    }

    /// The TLS settings the connections are made with.
    pub fn key(&self) -> &TlsContext {
        &self.key
    }

    /// Records where node `node`'s DFS service listens; a changed address drops its
    /// connections.
    pub fn set_addr(&self, node: u16, addr: SocketAddr) {
        if lock(&self.addrs).insert(node, addr) != Some(addr) {
            lock(&self.idle).remove(&node);
        }
    }

    /// Where node `node` listens, if known.
    pub fn addr(&self, node: u16) -> Option<SocketAddr> {
        lock(&self.addrs).get(&node).copied()
    }

    /// Drops the idle connections to `node` (it died or restarted).
    pub fn forget(&self, node: u16) {
        lock(&self.idle).remove(&node);
    }

    /// Sends `req` to `node` and waits up to `timeout` for the answer.
    pub async fn call(&self, node: u16, req: &Request, timeout: Duration) -> Result<Response> {
        let addr = self.addr(node).ok_or_else(|| Error::Peer {
            node,
            reason: "address unknown".into(),
        })?;
        let pooled = lock(&self.idle).get_mut(&node).and_then(Vec::pop);
        let mut conn = match pooled {
            Some(c) => c,
            None => Conn::connect(node, addr, &self.key).await?,
        };
        let exchange = async {
            conn.send(req).await?;
            conn.recv::<Response>().await?.ok_or_else(|| Error::Peer {
                node,
                reason: "closed the connection".into(),
            })
        };
        let resp = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| Error::Peer {
                node,
                reason: format!("no answer within {} ms", timeout.as_millis()),
            })??;
        let mut idle = lock(&self.idle);
        let list = idle.entry(node).or_default();
        if list.len() < IDLE_PER_PEER {
            list.push(conn);
        }
        Ok(resp)
    }
}
