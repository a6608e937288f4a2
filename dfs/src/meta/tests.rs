//! Unit tests of the metadata state machine.

use super::*;

const T1: Timespec = Timespec { sec: 100, nsec: 1 };
const T2: Timespec = Timespec { sec: 200, nsec: 2 };

fn node(kind: Kind, perm: u16) -> NewNode {
    NewNode {
        kind,
        perm,
        uid: 1000,
        gid: 1000,
        rdev: 0,
        target: Vec::new(),
        groups: Vec::new(),
    }
}

fn create(s: &mut MetaState, parent: Ino, name: &str, kind: Kind) -> Result<Attr, Errno> {
    match s.apply(MetaOp::Create {
        parent,
        name: name.into(),
        node: node(kind, 0o644),
        open_on: None,
        now: T1,
    })? {
        MetaReply::Attr(a) => Ok(a),
        other => panic!("unexpected {other:?}"),
    }
}

fn lookup(s: &MetaState, parent: Ino, name: &str) -> Result<Attr, Errno> {
    match s.read(&MetaRead::Lookup {
        parent,
        name: name.into(),
    })? {
        MetaReply::Attr(a) => Ok(a),
        other => panic!("unexpected {other:?}"),
    }
}

fn names(s: &MetaState, dir: Ino) -> Vec<String> {
    match s.read(&MetaRead::ReadDir {
        ino: dir,
        after: 0,
        max: 1000,
    }) {
        Ok(MetaReply::Dir(items)) => items
            .into_iter()
            .map(|i| String::from_utf8_lossy(&i.name).into_owned())
            .collect(),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn create_lookup_and_directory_link_counts() {
    let mut s = MetaState::new();
    let d = create(&mut s, ROOT, "d", Kind::Dir).expect("mkdir");
    assert_eq!(d.nlink, 2);
    assert_eq!(lookup(&s, ROOT, "d").expect("lookup").nlink, 2);
    let root = lookup(&s, ROOT, ".").expect("root");
    assert_eq!(root.nlink, 3, "root counts the subdirectory's ..");
    assert_eq!(root.mtime, T1);
    let f = create(&mut s, d.ino, "f", Kind::File).expect("create");
    assert_eq!((f.uid, f.gid, f.perm), (1000, 1000, 0o644));
    assert_eq!(create(&mut s, d.ino, "f", Kind::File), Err(libc::EEXIST));
    assert_eq!(create(&mut s, f.ino, "x", Kind::File), Err(libc::ENOTDIR));
    assert_eq!(
        create(&mut s, ROOT, &"n".repeat(256), Kind::File),
        Err(libc::ENAMETOOLONG)
    );
    assert_eq!(names(&s, d.ino), [".", "..", "f"]);
    assert_eq!(lookup(&s, d.ino, &"n".repeat(256)), Err(libc::ENAMETOOLONG));
    assert_eq!(lookup(&s, d.ino, "..").expect("dotdot").ino, ROOT);
}

#[test]
fn setgid_directory_passes_its_group_on() {
    let mut s = MetaState::new();
    let d = create(&mut s, ROOT, "d", Kind::Dir).expect("mkdir");
    s.apply(MetaOp::SetAttr {
        ino: d.ino,
        set: SetAttr {
            perm: Some(0o2775),
            gid: Some(50),
            ..SetAttr::default()
        },
        now: T2,
    })
    .expect("chmod");
    let sub = create(&mut s, d.ino, "sub", Kind::Dir).expect("mkdir");
    assert_eq!(sub.gid, 50);
    assert_ne!(
        sub.perm & libc::S_ISGID as u16,
        0,
        "directories inherit setgid"
    );
    let mut outsider = node(Kind::File, 0o2755);
    outsider.gid = 7;
    let r = s
        .apply(MetaOp::Create {
            parent: d.ino,
            name: b"f".to_vec(),
            node: outsider,
            open_on: None,
            now: T2,
        })
        .expect("create");
    let MetaReply::Attr(f) = r else {
        panic!("{r:?}")
    };
    assert_eq!(f.gid, 50);
    assert_eq!(f.perm & libc::S_ISGID as u16, 0, "outsider loses setgid");
}

#[test]
fn hard_links_and_unlink_keep_open_files_alive() {
    let mut s = MetaState::new();
    let f = create(&mut s, ROOT, "f", Kind::File).expect("create");
    s.apply(MetaOp::Link {
        ino: f.ino,
        parent: ROOT,
        name: b"g".to_vec(),
        now: T2,
    })
    .expect("link");
    assert_eq!(lookup(&s, ROOT, "g").expect("g").nlink, 2);
    assert_eq!(lookup(&s, ROOT, "g").expect("g").ctime, T2);
    s.apply(MetaOp::Open {
        ino: f.ino,
        node: 3,
    })
    .expect("open");
    for name in ["f", "g"] {
        s.apply(MetaOp::Unlink {
            parent: ROOT,
            name: name.into(),
            now: T2,
        })
        .expect("unlink");
    }
    assert_eq!(lookup(&s, ROOT, "f"), Err(libc::ENOENT));
    let attr = s.read(&MetaRead::GetAttr { ino: f.ino });
    assert!(
        matches!(attr, Ok(MetaReply::Attr(ref a)) if a.nlink == 0),
        "{attr:?}"
    );
    assert!(s.take_freed().is_empty());
    s.apply(MetaOp::Release {
        ino: f.ino,
        node: 3,
    })
    .expect("release");
    assert_eq!(s.read(&MetaRead::GetAttr { ino: f.ino }), Err(libc::ENOENT));
    assert_eq!(s.take_freed().len(), 1);
}

#[test]
fn a_dead_node_no_longer_holds_unlinked_files_or_locks() {
    let mut s = MetaState::new();
    let f = create(&mut s, ROOT, "f", Kind::File).expect("create");
    s.apply(MetaOp::Open {
        ino: f.ino,
        node: 2,
    })
    .expect("open");
    let owner = LockOwner { node: 2, owner: 9 };
    let lock = Lock {
        owner,
        kind: LockKind::Write,
        start: 0,
        end: u64::MAX,
        pid: 1,
    };
    s.apply(MetaOp::SetLock {
        ino: f.ino,
        lock: Some(lock),
        owner,
        start: 0,
        end: u64::MAX,
    })
    .expect("lock");
    let other = Lock {
        owner: LockOwner { node: 1, owner: 1 },
        ..lock
    };
    let blocked = MetaOp::SetLock {
        ino: f.ino,
        lock: Some(other),
        owner: other.owner,
        start: 0,
        end: u64::MAX,
    };
    assert_eq!(s.apply(blocked.clone()), Err(libc::EAGAIN));
    s.apply(MetaOp::Unlink {
        parent: ROOT,
        name: b"f".to_vec(),
        now: T2,
    })
    .expect("unlink");
    s.apply(MetaOp::NodeGone { node: 2 }).expect("gone");
    assert_eq!(s.take_freed().len(), 1);
    assert_eq!(s.apply(blocked), Err(libc::ENOENT));
}

#[test]
fn rename_replaces_atomically_and_refuses_loops() {
    let mut s = MetaState::new();
    let a = create(&mut s, ROOT, "a", Kind::Dir).expect("a");
    let b = create(&mut s, a.ino, "b", Kind::Dir).expect("b");
    let rn = |from: Ino, n: &str, to: Ino, m: &str, flags: u32| MetaOp::Rename {
        parent: from,
        name: n.into(),
        new_parent: to,
        new_name: m.into(),
        flags,
        now: T2,
    };
    assert_eq!(s.apply(rn(ROOT, "a", b.ino, "x", 0)), Err(libc::EINVAL));
    let f = create(&mut s, ROOT, "f", Kind::File).expect("f");
    let g = create(&mut s, ROOT, "g", Kind::File).expect("g");
    assert_eq!(s.apply(rn(ROOT, "f", ROOT, "g", 1)), Err(libc::EEXIST));
    assert_eq!(s.apply(rn(ROOT, "f", ROOT, "a", 0)), Err(libc::EISDIR));
    assert_eq!(s.apply(rn(ROOT, "a", ROOT, "g", 0)), Err(libc::ENOTDIR));
    s.apply(rn(ROOT, "f", ROOT, "g", 0)).expect("replace");
    assert_eq!(lookup(&s, ROOT, "g").expect("g").ino, f.ino);
    assert_eq!(lookup(&s, ROOT, "g").expect("g").ctime, T2);
    assert_eq!(s.read(&MetaRead::GetAttr { ino: g.ino }), Err(libc::ENOENT));
    // a directory moves with its link counts
    s.apply(rn(a.ino, "b", ROOT, "b", 0)).expect("move dir");
    assert_eq!(lookup(&s, ROOT, "a").expect("a").nlink, 2);
    assert_eq!(lookup(&s, ROOT, ".").expect("root").nlink, 4);
    assert_eq!(lookup(&s, b.ino, "..").expect("dotdot").ino, ROOT);
    // over a non-empty directory
    create(&mut s, b.ino, "inner", Kind::File).expect("inner");
    assert_eq!(s.apply(rn(ROOT, "a", ROOT, "b", 0)), Err(libc::ENOTEMPTY));
    s.apply(rn(ROOT, "a", ROOT, "b", 2)).expect("exchange");
    assert_eq!(lookup(&s, ROOT, "a").expect("a").ino, b.ino);
    assert_eq!(lookup(&s, ROOT, "b").expect("b").ino, a.ino);
}

#[test]
fn rmdir_needs_an_empty_directory() {
    let mut s = MetaState::new();
    let d = create(&mut s, ROOT, "d", Kind::Dir).expect("d");
    create(&mut s, d.ino, "f", Kind::File).expect("f");
    let rmdir = |n: &str| MetaOp::Rmdir {
        parent: ROOT,
        name: n.into(),
        now: T2,
    };
    assert_eq!(s.apply(rmdir("d")), Err(libc::ENOTEMPTY));
    s.apply(MetaOp::Unlink {
        parent: d.ino,
        name: b"f".to_vec(),
        now: T2,
    })
    .expect("unlink");
    assert_eq!(
        s.apply(MetaOp::Unlink {
            parent: ROOT,
            name: b"d".to_vec(),
            now: T2
        }),
        Err(libc::EISDIR)
    );
    s.apply(rmdir("d")).expect("rmdir");
    assert_eq!(lookup(&s, ROOT, ".").expect("root").nlink, 2);
}

fn chunk(version: u64, len: u32) -> ChunkRef {
    ChunkRef {
        version,
        crc: 7,
        stored: len,
        valid: len,
        replicas: vec![1, 2],
    }
}

#[test]
fn commit_and_truncate_keep_chunks_consistent() {
    let mut s = MetaState::new();
    let f = create(&mut s, ROOT, "f", Kind::File).expect("f");
    let full = u32::try_from(CHUNK_SIZE).expect("chunk size");
    s.apply(MetaOp::Commit {
        ino: f.ino,
        size: 2 * CHUNK_SIZE + 10,
        chunks: vec![(0, chunk(1, full)), (1, chunk(1, full)), (2, chunk(1, 10))],
        now: T2,
    })
    .expect("commit");
    let a = lookup(&s, ROOT, "f").expect("f");
    assert_eq!((a.size, a.mtime, a.ctime), (2 * CHUNK_SIZE + 10, T2, T2));
    s.apply(MetaOp::SetAttr {
        ino: f.ino,
        set: SetAttr {
            size: Some(CHUNK_SIZE + 5),
            ..SetAttr::default()
        },
        now: T1,
    })
    .expect("truncate");
    let Ok(MetaReply::Opened(a, chunks)) = s.apply(MetaOp::Open {
        ino: f.ino,
        node: 1,
    }) else {
        panic!("open")
    };
    assert_eq!(a.size, CHUNK_SIZE + 5);
    assert_eq!(chunks.len(), 2);
    assert_eq!(chunks[1].1.valid, 5, "bytes past the new end read as zeros");
    assert_eq!(
        s.apply(MetaOp::SetReplicas {
            ino: f.ino,
            idx: 1,
            version: 9,
            replicas: vec![3]
        }),
        Err(libc::ESTALE)
    );
    s.apply(MetaOp::SetReplicas {
        ino: f.ino,
        idx: 1,
        version: 1,
        replicas: vec![3],
    })
    .expect("moved");
}

#[test]
fn xattrs_follow_create_and_replace_flags() {
    let mut s = MetaState::new();
    let f = create(&mut s, ROOT, "f", Kind::File).expect("f");
    let set = |flags: i32, v: &str| MetaOp::SetXattr {
        ino: f.ino,
        name: b"user.k".to_vec(),
        value: v.into(),
        flags,
        now: T2,
    };
    assert_eq!(s.apply(set(2, "x")), Err(libc::ENODATA));
    s.apply(set(1, "v1")).expect("create");
    assert_eq!(s.apply(set(1, "x")), Err(libc::EEXIST));
    s.apply(set(2, "v2")).expect("replace");
    let get = MetaRead::GetXattr {
        ino: f.ino,
        name: b"user.k".to_vec(),
    };
    assert_eq!(s.read(&get), Ok(MetaReply::Bytes(b"v2".to_vec())));
    s.apply(MetaOp::RemoveXattr {
        ino: f.ino,
        name: b"user.k".to_vec(),
        now: T2,
    })
    .expect("remove");
    assert_eq!(s.read(&get), Err(libc::ENODATA));
}

#[test]
fn listing_resumes_after_a_cookie_even_when_entries_go() {
    let mut s = MetaState::new();
    for n in ["a", "b", "c", "d"] {
        create(&mut s, ROOT, n, Kind::File).expect("create");
    }
    let Ok(MetaReply::Dir(first)) = s.read(&MetaRead::ReadDir {
        ino: ROOT,
        after: 0,
        max: 4,
    }) else {
        panic!("readdir")
    };
    assert_eq!(first.len(), 4, "at most max entries, the dots included");
    let last = first.last().expect("entries").cookie;
    s.apply(MetaOp::Unlink {
        parent: ROOT,
        name: b"a".to_vec(),
        now: T2,
    })
    .expect("unlink");
    let Ok(MetaReply::Dir(rest)) = s.read(&MetaRead::ReadDir {
        ino: ROOT,
        after: last,
        max: 10,
    }) else {
        panic!("readdir")
    };
    let rest: Vec<&[u8]> = rest.iter().map(|i| i.name.as_slice()).collect();
    assert_eq!(rest, [b"c", b"d"]);
}
