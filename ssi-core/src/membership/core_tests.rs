//! One core at a time, fed hand-made datagrams and its own timers; the tests assert on the
//! commands it emits.

use std::net::SocketAddr;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::SeedableRng;

use super::message::{self, Accusers, Header, Kind, State, Update, Writer};
use super::{MemberEvent, MemberRecord, Membership, Output, Timer, TimerEvent, MAX_PACKET};
use crate::config::GossipConfig;
use crate::node::{NodeId, NodeIdentity};
use crate::probe::ProbeData;
use crate::view::MemberState;

fn ident(id: u16, gen: u64) -> NodeIdentity {
    let [hi, lo] = id.to_be_bytes();
    NodeIdentity {
        id: NodeId(id),
        addr: SocketAddr::from(([10, 77, hi, lo], 7700)),
        gen,
    }
}

fn update(identity: NodeIdentity, incarnation: u16, state: State) -> Update {
    Update {
        identity,
        incarnation,
        state,
        accusers: if state == State::Suspect {
            Accusers::one(NodeId(2))
        } else {
            Accusers::default()
        },
    }
}

fn datagram(from: &NodeIdentity, kind: Kind, updates: &[Update]) -> Vec<u8> {
    let mut w = Writer::new(&Header {
        from: from.clone(),
        incarnation: 0,
        kind,
    });
    for u in updates {
        assert!(w.push_update(u));
    }
    w.finish()
}

/// A core for node 1 with the given peers alive, outputs drained.
struct Harness {
    core: Membership<SmallRng>,
    /// What the core asked for when created.
    start: Vec<Output>,
    out: Vec<Output>,
}

impl Harness {
    fn new(peers: u16) -> Self {
        let mut core = Membership::new(
            ident(1, 1),
            "n1".into(),
            &GossipConfig::default(),
            SmallRng::seed_from_u64(3),
        );
        let records = (2..=peers + 1)
            .map(|id| MemberRecord {
                identity: ident(id, 1),
                incarnation: 0,
                active: true,
                suspect: false,
            })
            .collect();
        core.apply(records).expect("apply");
        let start = core.drain().collect();
        Harness {
            core,
            start,
            out: Vec::new(),
        }
    }

    fn take(&mut self) -> Vec<Output> {
        self.out.extend(self.core.drain());
        std::mem::take(&mut self.out)
    }

    fn packet(&mut self, data: &[u8]) -> Vec<Output> {
        self.core.handle_packet(data).expect("accepted");
        self.take()
    }

    /// Fires the first scheduled timer matching `want`, dropping the outputs before it.
    fn fire(&mut self, outputs: &[Output], want: impl Fn(&Timer) -> bool) -> Vec<Output> {
        let t = timers(outputs)
            .into_iter()
            .find(|t| want(&t.timer))
            .expect("timer scheduled");
        self.core.handle_timer(t).expect("timer");
        self.take()
    }
}

fn sends(outputs: &[Output]) -> Vec<(NodeIdentity, Vec<u8>)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Send { to, data } => Some((to.clone(), data.clone())),
            _ => None,
        })
        .collect()
}

fn timers(outputs: &[Output]) -> Vec<TimerEvent> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Schedule { timer, .. } => Some(timer.clone()),
            _ => None,
        })
        .collect()
}

fn events(outputs: &[Output]) -> Vec<MemberEvent> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Event(e) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

fn state_of(core: &Membership<SmallRng>, id: u16) -> MemberState {
    core.view()
        .into_iter()
        .find(|r| r.id == NodeId(id))
        .map(|r| r.state)
        .expect("known")
}

#[test]
fn a_new_core_arms_its_probe_and_gossip_timers() {
    let mut core = Membership::new(
        ident(1, 1),
        "n1".into(),
        &GossipConfig::default(),
        SmallRng::seed_from_u64(1),
    );
    let out: Vec<Output> = core.drain().collect();
    let t = timers(&out);
    assert!(t.iter().any(|t| t.timer == Timer::Probe));
    assert!(t.iter().any(|t| t.timer == Timer::Gossip));
}

#[test]
fn a_ping_is_answered_with_an_ack_of_the_same_seq() {
    let mut h = Harness::new(3);
    let out = h.packet(&datagram(&ident(2, 1), Kind::Ping { seq: 42 }, &[]));
    let sent = sends(&out);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, ident(2, 1));
    let p = message::decode(&sent[0].1).expect("decodes");
    assert_eq!(p.header.kind, Kind::Ack { seq: 42 });
    assert_eq!(p.header.from, ident(1, 1));
}

#[test]
fn a_sender_never_heard_of_becomes_a_member() {
    let mut h = Harness::new(1);
    let out = h.packet(&datagram(&ident(9, 5), Kind::Gossip, &[]));
    assert_eq!(events(&out), vec![MemberEvent::Up(ident(9, 5))]);
    assert_eq!(h.core.active_members(), 2);
}

#[test]
fn a_silent_member_is_probed_indirectly_then_suspected_then_declared_dead() {
    let mut h = Harness::new(5);
    let start = h.start.clone();
    let out = h.fire(&start, |t| *t == Timer::Probe);
    let (target, ping) = sends(&out).into_iter().next().expect("ping");
    let Kind::Ping { seq } = message::decode(&ping).expect("decodes").header.kind else {
        panic!("not a ping");
    };
    let after_rtt = h.fire(&out, |t| *t == Timer::ProbeTimeout { seq });
    let asked = sends(&after_rtt);
    assert_eq!(asked.len(), 3, "k = 3 indirect probes");
    for (to, data) in &asked {
        assert_ne!(*to, target);
        let kind = message::decode(data).expect("decodes").header.kind;
        assert_eq!(
            kind,
            Kind::PingReq {
                seq,
                target: target.clone()
            }
        );
    }
    // Nobody answers: at the next probe tick the target is probed again, not suspected yet.
    let retry = h.fire(&out, |t| *t == Timer::Probe);
    assert_eq!(state_of(&h.core, target.id.0), MemberState::Alive);
    let (again, _) = sends(&retry).into_iter().next().expect("ping");
    assert_eq!(again, target, "the retry goes to the same member");
    // Silent again: now it is suspect.
    let second_tick = timers(&retry)
        .into_iter()
        .find(|t| t.timer == Timer::Probe)
        .expect("probe timer")
        .at;
    let next = h.fire(&retry, |t| *t == Timer::Probe);
    assert_eq!(state_of(&h.core, target.id.0), MemberState::Suspect);
    // The suspicion goes at once to the suspect, on a ping it can answer with a refutation,
    // and to 3 members, who will check it.
    let carries = |data: &[u8]| {
        let p = message::decode(data).expect("decodes");
        let told = p
            .updates
            .iter()
            .any(|u| u.identity == target && u.state == State::Suspect);
        (p.header.kind, told)
    };
    let sent = sends(&next);
    assert!(sent
        .iter()
        .any(|(to, d)| *to == target && matches!(carries(d), (Kind::Ping { .. }, true))));
    let told = sent
        .iter()
        .filter(|(to, d)| *to != target && carries(d) == (Kind::Gossip, true))
        .count();
    assert_eq!(told, 3);
    // Nobody confirms: the longest suspicion, 6 x 0.5 s.
    let s = timers(&next)
        .into_iter()
        .find(|t| matches!(t.timer, Timer::Suspicion { .. }))
        .expect("suspicion timer");
    assert_eq!(s.at - second_tick, Duration::from_millis(3000));
    // Unconfirmed: a last chance first, directly and through 3 others, each carrying the
    // suspicion so that the suspect can refute it.
    let last = h.fire(&next, |t| matches!(t, Timer::Suspicion { .. }));
    assert!(events(&last).is_empty());
    let asked = sends(&last);
    assert_eq!(asked.len(), 4);
    for (to, data) in &asked {
        let p = message::decode(data).expect("decodes");
        match p.header.kind {
            Kind::Ping { .. } => assert_eq!(*to, target),
            Kind::PingReq { target: ref t, .. } => assert_eq!(*t, target),
            ref k => panic!("unexpected {k:?}"),
        }
        assert!(p
            .updates
            .iter()
            .any(|u| u.identity == target && u.state == State::Suspect));
    }
    let dead = h.fire(&last, |t| matches!(t, Timer::Suspicion { .. }));
    assert_eq!(events(&dead), vec![MemberEvent::Dead(target.clone())]);
    assert_eq!(state_of(&h.core, target.id.0), MemberState::Dead);
}

#[test]
fn a_suspect_that_answers_its_last_chance_is_not_declared_dead() {
    let mut h = Harness::new(5);
    let suspect = Update {
        identity: ident(3, 1),
        incarnation: 0,
        state: State::Suspect,
        accusers: Accusers::one(NodeId(2)),
    };
    let out = h.packet(&datagram(&ident(2, 1), Kind::Gossip, &[suspect]));
    let last = h.fire(&out, |t| matches!(t, Timer::Suspicion { .. }));
    let (_, ping) = sends(&last)
        .into_iter()
        .find(|(to, _)| *to == ident(3, 1))
        .expect("direct ping");
    let Kind::Ping { seq } = message::decode(&ping).expect("decodes").header.kind else {
        panic!("not a ping");
    };
    // The suspect had refuted (incarnation 1) but we missed it: its ack says so.
    let ack = Writer::new(&Header {
        from: ident(3, 1),
        incarnation: 1,
        kind: Kind::Ack { seq },
    });
    h.packet(&ack.finish());
    assert_eq!(state_of(&h.core, 3), MemberState::Alive);
    let after = h.fire(&last, |t| matches!(t, Timer::Suspicion { .. }));
    assert!(events(&after).is_empty(), "{after:?}");
}

#[test]
fn confirmations_from_other_members_shorten_the_suspicion() {
    let mut h = Harness::new(5);
    let suspect = |by: u16| Update {
        identity: ident(3, 1),
        incarnation: 0,
        state: State::Suspect,
        accusers: Accusers::one(NodeId(by)),
    };
    let first = h.packet(&datagram(&ident(2, 1), Kind::Gossip, &[suspect(2)]));
    let long = timers(&first)
        .into_iter()
        .find(|t| matches!(t.timer, Timer::Suspicion { .. }))
        .expect("suspicion timer");
    let second = h.packet(&datagram(&ident(4, 1), Kind::Gossip, &[suspect(4)]));
    let shorter = timers(&second)
        .into_iter()
        .find(|t| matches!(t.timer, Timer::Suspicion { .. }))
        .expect("an earlier timer");
    assert!(shorter.at < long.at);
    let third = h.packet(&datagram(&ident(5, 1), Kind::Gossip, &[suspect(5)]));
    let shortest = timers(&third)
        .into_iter()
        .find(|t| matches!(t.timer, Timer::Suspicion { .. }))
        .expect("an earlier timer");
    assert_eq!(shortest.at, Duration::from_millis(500));
    // The same accuser again is no news.
    let again = h.packet(&datagram(&ident(5, 1), Kind::Gossip, &[suspect(5)]));
    assert!(!timers(&again)
        .iter()
        .any(|t| matches!(t.timer, Timer::Suspicion { .. })));
}

#[test]
fn a_suspicion_heard_from_its_accuser_is_checked_and_the_confirmation_goes_back() {
    let mut h = Harness::new(5);
    let suspect = update(ident(3, 1), 0, State::Suspect);
    let heard = h.packet(&datagram(&ident(2, 1), Kind::Gossip, &[suspect]));
    // The next probe goes to the suspect, out of its turn.
    let start = h.start.clone();
    let probe = h.fire(&start, |t| *t == Timer::Probe);
    let (to, ping) = sends(&probe).into_iter().next().expect("ping");
    assert_eq!(to, ident(3, 1));
    let Kind::Ping { seq } = message::decode(&ping).expect("decodes").header.kind else {
        panic!("not a ping");
    };
    h.fire(&probe, |t| *t == Timer::ProbeTimeout { seq });
    // Silent: no retry for a suspect; our confirmation goes straight to the accuser.
    let failed = h.fire(&probe, |t| *t == Timer::Probe);
    let back = sends(&failed)
        .into_iter()
        .filter(|(to, _)| *to == ident(2, 1))
        .find_map(|(_, d)| {
            let p = message::decode(&d).expect("decodes");
            p.updates
                .into_iter()
                .find(|u| u.identity == ident(3, 1) && u.state == State::Suspect)
        })
        .expect("the confirmation to the accuser");
    assert_eq!(back.accusers.as_slice(), &[NodeId(2), NodeId(1)]);
    // With one confirmation of two expected, the timeout shrank below the longest.
    let first = timers(&heard)
        .into_iter()
        .find(|t| matches!(t.timer, Timer::Suspicion { .. }))
        .expect("suspicion timer");
    let shorter = timers(&failed)
        .into_iter()
        .find(|t| matches!(t.timer, Timer::Suspicion { .. }))
        .expect("an earlier timer");
    assert!(shorter.at < first.at);
}

#[test]
fn a_relayed_probe_is_acked_or_nacked_to_the_requester() {
    let mut h = Harness::new(3);
    let req = Kind::PingReq {
        seq: 7,
        target: ident(3, 1),
    };
    let out = h.packet(&datagram(&ident(2, 1), req.clone(), &[]));
    let (to, ping) = sends(&out).into_iter().next().expect("relayed ping");
    assert_eq!(to, ident(3, 1));
    let Kind::Ping { seq: mine } = message::decode(&ping).expect("decodes").header.kind else {
        panic!("not a ping");
    };
    let back = h.packet(&datagram(&ident(3, 1), Kind::Ack { seq: mine }, &[]));
    let (to, ack) = sends(&back).into_iter().next().expect("indirect ack");
    assert_eq!(to, ident(2, 1));
    assert_eq!(
        message::decode(&ack).expect("decodes").header.kind,
        Kind::IndirectAck {
            seq: 7,
            target: NodeId(3)
        }
    );
    // A second request that the target leaves unanswered ends in a nack.
    let out = h.packet(&datagram(&ident(2, 1), req, &[]));
    let late = h.fire(&out, |t| matches!(t, Timer::RelayTimeout { .. }));
    let (to, nack) = sends(&late).into_iter().next().expect("nack");
    assert_eq!(to, ident(2, 1));
    assert_eq!(
        message::decode(&nack).expect("decodes").header.kind,
        Kind::Nack {
            seq: 7,
            target: NodeId(3)
        }
    );
}

#[test]
fn a_suspicion_of_this_node_is_refuted_with_a_higher_incarnation() {
    let mut h = Harness::new(2);
    let about_me = update(ident(1, 1), 4, State::Suspect);
    let out = h.packet(&datagram(&ident(2, 1), Kind::Ping { seq: 1 }, &[about_me]));
    assert_eq!(h.core.incarnation(), 5);
    // The answer already carries the refutation, in its header and as an update.
    let (_, ack) = sends(&out).into_iter().next().expect("ack");
    let p = message::decode(&ack).expect("decodes");
    assert_eq!(p.header.incarnation, 5);
    assert!(p.updates.contains(&update(ident(1, 1), 5, State::Alive)));
}

#[test]
fn a_death_verdict_on_this_node_renews_it_under_the_next_generation() {
    let mut h = Harness::new(2);
    let out = h.packet(&datagram(
        &ident(2, 1),
        Kind::Gossip,
        &[update(ident(1, 1), 0, State::Dead)],
    ));
    assert_eq!(events(&out), vec![MemberEvent::Rejoined(ident(1, 2))]);
    assert_eq!(h.core.identity(), &ident(1, 2));
    assert_eq!(h.core.incarnation(), 0);
    // It asks the member that told it for the full state.
    let (to, data) = sends(&out).into_iter().next().expect("announce");
    assert_eq!(to, ident(2, 1));
    let p = message::decode(&data).expect("decodes");
    assert_eq!(p.header.kind, Kind::Announce);
    assert_eq!(p.header.from, ident(1, 2));
}

#[test]
fn a_renewed_node_forgets_its_own_death_verdicts() {
    let mut h = Harness::new(3);
    h.packet(&datagram(
        &ident(2, 1),
        Kind::Gossip,
        &[update(ident(3, 1), 0, State::Dead)],
    ));
    h.packet(&datagram(
        &ident(2, 1),
        Kind::Gossip,
        &[update(ident(1, 1), 0, State::Dead)],
    ));
    assert_eq!(h.core.view().len(), 3, "node 3 forgotten");
    // Heard of again, it is a member, not a dead node back to life.
    let out = h.packet(&datagram(&ident(3, 1), Kind::Gossip, &[]));
    assert_eq!(events(&out), vec![MemberEvent::Up(ident(3, 1))]);
}

#[test]
fn a_newer_run_of_this_node_id_makes_this_one_stop() {
    let mut h = Harness::new(2);
    let out = h.packet(&datagram(
        &ident(2, 1),
        Kind::Gossip,
        &[update(ident(1, 9), 0, State::Alive)],
    ));
    assert_eq!(events(&out), vec![MemberEvent::Defunct]);
    let out = h.packet(&datagram(&ident(2, 1), Kind::Ping { seq: 3 }, &[]));
    assert!(sends(&out).is_empty(), "a defunct node answers nothing");
    assert!(h.core.publish(ProbeData::default()).is_err());
}

#[test]
fn a_member_known_dead_is_told_so_when_it_talks() {
    let mut h = Harness::new(3);
    h.packet(&datagram(
        &ident(2, 1),
        Kind::Gossip,
        &[update(ident(3, 1), 0, State::Dead)],
    ));
    let out = h.packet(&datagram(&ident(3, 1), Kind::Ping { seq: 5 }, &[]));
    let (to, ack) = sends(&out).into_iter().next().expect("ack");
    assert_eq!(to, ident(3, 1));
    let p = message::decode(&ack).expect("decodes");
    assert_eq!(p.updates[0], update(ident(3, 1), 0, State::Dead));
    assert_eq!(state_of(&h.core, 3), MemberState::Dead, "still dead here");
}

#[test]
fn an_announcement_is_answered_with_the_full_state_in_bounded_datagrams() {
    let mut h = Harness::new(300);
    h.core
        .publish(ProbeData {
            cpus: 8,
            ..ProbeData::default()
        })
        .expect("publish");
    let out = h.packet(&datagram(&ident(1000, 1), Kind::Announce, &[]));
    let feed = sends(&out);
    assert!(feed.len() > 2, "300 members take several datagrams");
    let mut seen = std::collections::HashSet::new();
    let mut infos = 0;
    for (to, data) in &feed {
        assert_eq!(*to, ident(1000, 1));
        assert!(data.len() <= MAX_PACKET);
        let p = message::decode(data).expect("decodes");
        assert_eq!(p.header.kind, Kind::Feed);
        seen.extend(p.updates.iter().map(|u| u.identity.id));
        infos += p.infos.len();
    }
    assert_eq!(seen.len(), 301, "every member and the joiner itself");
    assert_eq!(infos, 1, "the seed's own probe data");
    assert_eq!(
        events(&out),
        vec![MemberEvent::Up(ident(1000, 1))],
        "the joiner is a member"
    );
}

#[test]
fn applied_records_are_kept_but_not_gossiped_on() {
    let mut h = Harness::new(0);
    h.core
        .apply(vec![MemberRecord {
            identity: ident(2, 1),
            incarnation: 3,
            active: true,
            suspect: false,
        }])
        .expect("apply");
    let out = h.take();
    assert_eq!(
        events(&out),
        vec![MemberEvent::Up(ident(2, 1)), MemberEvent::Joined]
    );
    let out = h.packet(&datagram(&ident(2, 1), Kind::Ping { seq: 1 }, &[]));
    let (_, ack) = sends(&out).into_iter().next().expect("ack");
    assert!(message::decode(&ack).expect("decodes").updates.is_empty());
    let snap = h.core.snapshot();
    assert_eq!(snap.len(), 2);
    assert_eq!(snap[1].incarnation, 3);
}

#[test]
fn a_leave_notice_turns_a_death_verdict_into_left() {
    let mut h = Harness::new(3);
    h.packet(&datagram(
        &ident(2, 1),
        Kind::Gossip,
        &[update(ident(3, 1), 0, State::Dead)],
    ));
    let out = h.packet(&datagram(
        &ident(2, 1),
        Kind::Gossip,
        &[update(ident(3, 1), 0, State::Left)],
    ));
    assert_eq!(events(&out), vec![MemberEvent::Left(ident(3, 1))]);
    assert_eq!(state_of(&h.core, 3), MemberState::Left);
}

#[test]
fn leaving_tells_several_members_then_the_core_falls_silent() {
    let mut h = Harness::new(10);
    h.core.leave().expect("leave");
    let out = h.take();
    let farewells = sends(&out);
    assert_eq!(farewells.len(), 6, "twice the gossip fanout");
    for (_, data) in &farewells {
        let p = message::decode(data).expect("decodes");
        assert_eq!(p.updates[0], update(ident(1, 1), 0, State::Left));
    }
    let out = h.packet(&datagram(&ident(2, 1), Kind::Ping { seq: 1 }, &[]));
    assert!(sends(&out).is_empty());
    assert_eq!(state_of(&h.core, 1), MemberState::Left);
    assert!(h.core.announce(ident(2, 1)).is_err());
}

#[test]
fn a_malformed_datagram_is_refused_and_changes_nothing() {
    let mut h = Harness::new(2);
    let mut data = datagram(
        &ident(9, 1),
        Kind::Gossip,
        &[update(ident(1, 1), 0, State::Dead)],
    );
    data.push(0xff);
    let err = h.core.handle_packet(&data).expect_err("trailing byte");
    assert!(err.to_string().contains("item"), "{err}");
    // A bad probe-data body about a member never heard of: refused as a whole too.
    let garbage = [0xffu8; 6];
    let mut w = Writer::new(&Header {
        from: ident(9, 1),
        incarnation: 0,
        kind: Kind::Gossip,
    });
    assert!(w.push_update(&update(ident(1, 1), 0, State::Dead)));
    assert!(w.push_info(&message::InfoItem {
        id: NodeId(8),
        addr: ident(8, 1).addr,
        gen: 1,
        seq: 1,
        body: &garbage,
    }));
    let err = h.core.handle_packet(&w.finish()).expect_err("bad body");
    assert!(err.to_string().contains("info body"), "{err}");
    assert!(h.take().iter().all(|o| !matches!(o, Output::Send { .. })));
    assert_eq!(h.core.identity(), &ident(1, 1), "no renewal");
    assert_eq!(h.core.active_members(), 2, "sender not learnt");
}

#[test]
fn probe_data_is_published_at_once_then_paced() {
    let mut h = Harness::new(2);
    h.core.publish(ProbeData::default()).expect("publish");
    let out = h.packet(&datagram(&ident(2, 1), Kind::Ping { seq: 1 }, &[]));
    let (_, ack) = sends(&out).into_iter().next().expect("ack");
    let p = message::decode(&ack).expect("decodes");
    assert_eq!(p.infos.len(), 1);
    assert_eq!((p.infos[0].id, p.infos[0].seq), (NodeId(1), 1));
    // A second report within the info interval waits.
    h.core.publish(ProbeData::default()).expect("publish");
    assert_eq!(h.core.own.seq, 1);
}

fn probe_period_after(outputs: &[Output]) -> Duration {
    outputs
        .iter()
        .find_map(|o| match o {
            Output::Schedule { timer, after } if timer.timer == Timer::Probe => Some(*after),
            _ => None,
        })
        .expect("next probe scheduled")
}

#[test]
fn a_node_whose_timers_run_late_probes_less_eagerly_once_per_hold_up() {
    let period = GossipConfig::default().probe_period;
    let mut h = Harness::new(3);
    let start = h.start.clone();
    let t = timers(&start);
    let probe = t.iter().find(|t| t.timer == Timer::Probe).expect("probe");
    let gossip = t.iter().find(|t| t.timer == Timer::Gossip).expect("gossip");
    // Both first timers are due within one probe period: one hold-up of a second delays both.
    h.core.timer_late(probe, Duration::from_secs(1));
    h.core.timer_late(gossip, Duration::from_secs(1));
    let out = h.fire(&start, |t| *t == Timer::Probe);
    assert_eq!(probe_period_after(&out), period * 2, "health worse once");

    let mut on_time = Harness::new(3);
    let start = on_time.start.clone();
    let probe = timers(&start)
        .into_iter()
        .find(|t| t.timer == Timer::Probe)
        .expect("probe");
    on_time.core.timer_late(&probe, Duration::from_millis(20));
    let out = on_time.fire(&start, |t| *t == Timer::Probe);
    assert_eq!(probe_period_after(&out), period, "20 ms late is on time");
}

#[test]
fn a_probe_that_times_out_after_its_target_left_the_last_member_asks_nobody() {
    // Seen in a daemon: the last other member was declared dead while a probe of it was in
    // flight; the probe's timeout then counted helpers among no member but the target
    // (0 - 1) and the gossip task died on the overflow.
    let mut h = Harness::new(1);
    let start = h.start.clone();
    let out = h.fire(&start, |t| *t == Timer::Probe);
    let (target, ping) = sends(&out).into_iter().next().expect("ping");
    assert_eq!(target, ident(2, 1));
    let Kind::Ping { seq } = message::decode(&ping).expect("decodes").header.kind else {
        panic!("not a ping");
    };
    let left = h.packet(&datagram(
        &ident(2, 1),
        Kind::Gossip,
        &[update(ident(2, 1), 0, State::Left)],
    ));
    assert_eq!(
        events(&left),
        vec![MemberEvent::Left(ident(2, 1)), MemberEvent::Alone]
    );
    let mut all = out;
    all.extend(left);
    let after = h.fire(&all, |t| *t == Timer::ProbeTimeout { seq });
    assert!(sends(&after).is_empty(), "no helper to ask: {after:?}");
}
