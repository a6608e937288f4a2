use super::*;
use crate::store::MemStore;

fn pool(n: u32) -> PoolConfig {
    PoolConfig {
        vo: "atlas".into(),
        name_prefix: "atlas".into(),
        gid: 61000,
        uid_first: 61000,
        uid_last: 61000 + n - 1,
        lease_secs: 3600,
        home_root: "/home/grid".into(),
        on_expiry: OnExpiry::Archive,
    }
}

#[tokio::test]
async fn same_user_same_account_others_get_their_own() {
    let s = MemStore::new();
    let pools = [pool(3)];
    let m = AccountMapper::new(&s, &pools);
    let a = m.map("atlas", "/CN=alice", 1000).await.unwrap();
    let b = m.map("atlas", "/CN=bob", 1000).await.unwrap();
    assert_eq!((a.account.as_str(), a.uid), ("atlas000", 61000));
    assert_eq!((b.account.as_str(), b.uid), ("atlas001", 61001));
    assert_eq!(a.home, PathBuf::from("/home/grid/atlas000"));
    let again = m.map("atlas", "/CN=alice", 2000).await.unwrap();
    assert_eq!(again.uid, a.uid);
    assert_eq!(
        again.last_used, 2000,
        "a use after a minute bumps the lease"
    );
    assert_eq!(
        m.map("atlas", "/CN=alice", 2010).await.unwrap().last_used,
        2000
    );
    let e = m
        .map("cms", "/CN=alice", 1000)
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "account pool of vo cms: no account pool is configured for this vo"
    );
}

#[tokio::test]
async fn an_exhausted_pool_refuses_until_a_lease_expires() {
    let s = MemStore::new();
    let pools = [pool(2)];
    let m = AccountMapper::new(&s, &pools);
    m.map("atlas", "/CN=a", 0).await.unwrap();
    m.map("atlas", "/CN=b", 1000).await.unwrap();
    let e = m.map("atlas", "/CN=c", 1000).await.unwrap_err().to_string();
    assert!(e.contains("all 2 accounts are leased"), "{e}");
    // At 3600 only a's lease (last used at 0) has expired.
    let ended = m.sweep(3600).await.unwrap();
    assert_eq!(
        ended.iter().map(|l| l.subject.as_str()).collect::<Vec<_>>(),
        ["/CN=a"]
    );
    let c = m.map("atlas", "/CN=c", 3600).await.unwrap();
    assert_eq!(c.uid, 61000, "c gets the uid a held");
    assert!(m.lookup("atlas", "/CN=a").await.unwrap().is_none());
    // a comes back after expiry: a new lease (the pool is full again).
    assert!(m.map("atlas", "/CN=a", 3601).await.is_err());
}

/// A memory store that yields before every call, so that concurrent mappers interleave between
/// their reads and their compare-and-swaps as they would over the network.
#[derive(Debug, Default)]
struct Interleaving(MemStore);

impl GridStore for Interleaving {
    fn get(
        &self,
        t: Table,
        k: &str,
    ) -> futures::future::BoxFuture<'_, crate::Result<Option<Vec<u8>>>> {
        let k = k.to_string();
        Box::pin(async move {
            tokio::task::yield_now().await;
            self.0.get(t, &k).await
        })
    }
    fn cas(
        &self,
        t: Table,
        k: &str,
        e: Option<Vec<u8>>,
        n: Option<Vec<u8>>,
    ) -> futures::future::BoxFuture<'_, crate::Result<bool>> {
        let k = k.to_string();
        Box::pin(async move {
            tokio::task::yield_now().await;
            self.0.cas(t, &k, e, n).await
        })
    }
    fn scan(
        &self,
        t: Table,
        p: &str,
        a: Option<&str>,
        l: usize,
    ) -> futures::future::BoxFuture<'_, crate::Result<crate::store::Entries>> {
        let (p, a) = (p.to_string(), a.map(str::to_string));
        Box::pin(async move {
            tokio::task::yield_now().await;
            self.0.scan(t, &p, a.as_deref(), l).await
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_mappers_never_share_a_uid() {
    let s = std::sync::Arc::new(Interleaving::default());
    let pools = std::sync::Arc::new([pool(64)]);
    let mut tasks = Vec::new();
    for i in 0..48 {
        let (s, pools) = (s.clone(), pools.clone());
        tasks.push(tokio::spawn(async move {
            let m = AccountMapper::new(&*s, &*pools);
            // Every user asks twice, as from two nodes at once.
            let subject = format!("/CN=user{}", i % 24);
            m.map("atlas", &subject, 0).await.unwrap()
        }));
    }
    let mut by_subject = std::collections::BTreeMap::new();
    for t in tasks {
        let l = t.await.unwrap();
        let prev = by_subject.insert(l.subject.clone(), l.uid);
        assert!(
            prev.is_none_or(|u| u == l.uid),
            "{} got two uids",
            l.subject
        );
    }
    let uids: BTreeSet<u32> = by_subject.values().copied().collect();
    assert_eq!(uids.len(), 24);
}

#[test]
fn pool_config_is_checked() {
    let mut p = pool(1);
    assert!(p.check().is_ok());
    p.name_prefix = "Atlas".into();
    assert!(p.check().unwrap_err().to_string().contains("name_prefix"));
    p = pool(1);
    p.uid_first = 0;
    assert!(p.check().unwrap_err().to_string().contains("includes root"));
    p = pool(1);
    p.home_root = "rel".into();
    assert!(p.check().is_err());
}
