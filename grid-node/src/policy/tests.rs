use super::*;
use crate::store::MemStore;

fn user(subject: &str, fqans: &[&str]) -> Principal {
    let fqans: Vec<crate::vo::Fqan> = fqans.iter().map(|f| f.parse().unwrap()).collect();
    Principal {
        subject: subject.into(),
        vo: fqans[0].vo.clone(),
        fqans,
        cluster_admin: false,
    }
}

fn task(owner: &str, vo: &str) -> Resource {
    Resource::Task {
        id: "t1".into(),
        owner: owner.into(),
        vo: vo.into(),
        queue: "default".into(),
    }
}

fn queue(vos: &[&str]) -> Resource {
    Resource::Queue {
        name: "default".into(),
        vos: vos.iter().map(|v| v.to_string()).collect(),
    }
}

#[test]
fn members_submit_only_to_their_vos_queues() {
    let e = PolicyEngine::new().unwrap();
    let alice = user("/CN=alice", &["/atlas", "/atlas/prod/Role=pilot"]);
    let bob = user("/CN=bob", &["/cms"]);
    let d = e
        .decide(&alice, Action::Submit, &queue(&["atlas"]))
        .unwrap();
    assert!(d.allowed);
    assert_eq!(d.policies, ["member-submits-to-vo-queues"]);
    assert!(
        !e.decide(&bob, Action::Submit, &queue(&["atlas"]))
            .unwrap()
            .allowed
    );
    let err = e
        .authorize(&bob, Action::Submit, &queue(&["atlas"]))
        .unwrap_err();
    assert_eq!(err.to_string(), "/CN=bob may not submit queue default");
}

#[test]
fn owner_and_vo_admin_may_cancel_others_not() {
    let e = PolicyEngine::new().unwrap();
    let alice = user("/CN=alice", &["/atlas"]);
    let admin = user("/CN=root-of-atlas", &["/atlas", "/atlas/Role=admin"]);
    let mallory = user("/CN=mallory", &["/atlas"]);
    let cms_admin = user("/CN=cms-admin", &["/cms", "/cms/Role=admin"]);
    let t = task("/CN=alice", "atlas");
    assert!(e.decide(&alice, Action::Cancel, &t).unwrap().allowed);
    let d = e.decide(&admin, Action::Cancel, &t).unwrap();
    assert_eq!(
        (d.allowed, d.policies.as_slice()),
        (true, &["vo-admin-controls-member-tasks".to_string()][..])
    );
    assert!(!e.decide(&mallory, Action::Cancel, &t).unwrap().allowed);
    assert!(!e.decide(&cms_admin, Action::Cancel, &t).unwrap().allowed);
    // A pilot role in a group is not the VO admin role.
    let pilot = user("/CN=p", &["/atlas", "/atlas/prod/Role=admin"]);
    assert!(!e.decide(&pilot, Action::Cancel, &t).unwrap().allowed);
    let mut op = user("/CN=operator", &["/ops"]);
    op.cluster_admin = true;
    assert!(e.decide(&op, Action::Cancel, &t).unwrap().allowed);
    let p = Resource::Process {
        gpid: 4097,
        owner: "/CN=alice".into(),
        vo: "atlas".into(),
    };
    for a in [Action::Kill, Action::Migrate, Action::Checkpoint] {
        assert!(e.decide(&alice, a, &p).unwrap().allowed);
        assert!(e.decide(&admin, a, &p).unwrap().allowed);
        assert!(!e.decide(&mallory, a, &p).unwrap().allowed);
    }
}

#[test]
fn dfs_directories_of_a_vo_are_its_members() {
    let e = PolicyEngine::new().unwrap();
    let alice = user("/CN=alice", &["/atlas"]);
    let bob = user("/CN=bob", &["/cms"]);
    let shared = Resource::Path {
        path: "/vo/atlas/data/x".into(),
        owner: None,
        vo: Some("atlas".into()),
    };
    assert!(e.decide(&alice, Action::Read, &shared).unwrap().allowed);
    assert!(!e.decide(&bob, Action::Write, &shared).unwrap().allowed);
    let own = Resource::Path {
        path: "/home/bob/".into(),
        owner: Some("/CN=bob".into()),
        vo: None,
    };
    assert!(e.decide(&bob, Action::Write, &own).unwrap().allowed);
    assert!(!e.decide(&alice, Action::Read, &own).unwrap().allowed);
}

#[test]
fn an_invalid_policy_set_is_refused_and_the_old_one_kept() {
    let e = PolicyEngine::new().unwrap();
    let alice = user("/CN=alice", &["/atlas"]);
    let before = e.text().unwrap();
    for (bad, why) in [
        ("permit(principal, action, resource", "does not parse"),
        ("permit(principal, action == Ssi::Action::\"fly\", resource);", "does not validate"),
        ("permit(principal, action, resource) when { principal.age > 3 };", "does not validate"),
        ("permit(principal, action == Ssi::Action::\"submit\", resource) when { resource.owner == principal };", "does not validate"),
    ] {
        let err = e.set(bad).unwrap_err().to_string();
        assert!(err.starts_with(&format!("policy: {why}")), "{bad}: {err}");
        assert_eq!(e.text().unwrap(), before);
    }
    assert!(
        e.decide(&alice, Action::Submit, &queue(&["atlas"]))
            .unwrap()
            .allowed
    );
}

#[test]
fn a_custom_policy_set_changes_decisions() {
    let e = PolicyEngine::new().unwrap();
    // Only pilots of /atlas/prod may submit, and only to queues of their VO.
    let custom = r#"
        @id("pilots-submit")
        permit(principal in Ssi::Group::"/atlas/prod", action == Ssi::Action::"submit", resource is Ssi::Queue)
        when { resource in principal.vo };
        forbid(principal, action, resource is Ssi::Path) when { resource in Ssi::Path::"/secret" };
        permit(principal, action == Ssi::Action::"read", resource is Ssi::Path);
    "#;
    e.set(custom).unwrap();
    let pilot = user("/CN=p", &["/atlas", "/atlas/prod/sim/Role=pilot"]);
    let plain = user("/CN=q", &["/atlas"]);
    assert_eq!(
        e.decide(&pilot, Action::Submit, &queue(&["atlas"]))
            .unwrap()
            .policies,
        ["pilots-submit"]
    );
    assert!(
        !e.decide(&plain, Action::Submit, &queue(&["atlas"]))
            .unwrap()
            .allowed
    );
    let secret = Resource::Path {
        path: "/secret/a/b".into(),
        owner: None,
        vo: None,
    };
    let open = Resource::Path {
        path: "/open/a".into(),
        owner: None,
        vo: None,
    };
    assert!(!e.decide(&plain, Action::Read, &secret).unwrap().allowed);
    assert!(e.decide(&plain, Action::Read, &open).unwrap().allowed);
}

#[tokio::test]
async fn a_stored_policy_set_reaches_other_nodes() {
    let store = MemStore::new();
    let a = PolicyEngine::new().unwrap();
    let b = PolicyEngine::new().unwrap();
    let deny_all = "forbid(principal, action, resource);";
    assert!(a
        .set_and_store(
            &store,
            "permit(principal, action == Ssi::Action::\"nope\", resource);"
        )
        .await
        .is_err());
    a.set_and_store(&store, deny_all).await.unwrap();
    b.reload(&store).await.unwrap();
    assert_eq!(b.text().unwrap(), deny_all);
    let alice = user("/CN=alice", &["/atlas"]);
    assert!(
        !b.decide(&alice, Action::Submit, &queue(&["atlas"]))
            .unwrap()
            .allowed
    );
}

#[test]
fn actions_parse_by_name() {
    assert_eq!("cancel".parse::<Action>().unwrap(), Action::Cancel);
    assert_eq!(Action::Checkpoint.to_string(), "checkpoint");
    assert!("fly"
        .parse::<Action>()
        .unwrap_err()
        .to_string()
        .contains("one of submit"));
}
