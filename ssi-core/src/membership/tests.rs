//! State transitions of the membership core, driven by the deterministic simulator.

use std::time::Duration;

use super::sim::{Sim, SimConfig};
use super::MemberEvent;
use crate::view::MemberState;

const S: fn(u64) -> Duration = Duration::from_secs;

fn states(sim: &Sim, observer: usize) -> Vec<MemberState> {
    sim.core(observer).view().iter().map(|r| r.state).collect()
}

fn converged(members: usize, seed: u64) -> Sim {
    let mut cfg = SimConfig::new(members, seed);
    cfg.publish_info = true;
    let mut sim = Sim::new(cfg);
    sim.run_for(S(5));
    sim
}

#[test]
fn members_join_and_all_see_each_other_alive_with_probe_data() {
    let sim = converged(6, 1);
    for i in 0..6 {
        let view = sim.core(i).view();
        assert_eq!(view.len(), 6, "member {i} sees {view:?}");
        assert!(view.iter().all(|r| r.state == MemberState::Alive));
        assert!(view.iter().all(|r| r.probe.cpus >= 2), "probe data spread");
        assert_eq!(view.iter().filter(|r| r.local).count(), 1);
        assert_eq!(view[2].name, "n3");
    }
}

#[test]
fn members_join_through_a_lossy_network() {
    let mut cfg = SimConfig::new(12, 11);
    cfg.loss = 0.2;
    let mut sim = Sim::new(cfg);
    sim.run_for(S(20));
    for i in 0..12 {
        assert_eq!(sim.core(i).active_members(), 11, "member {i}");
    }
}

#[test]
fn killed_member_is_declared_dead_by_everyone() {
    let mut sim = converged(6, 2);
    sim.kill(3);
    let killed_at = sim.now();
    sim.run_for(S(10));
    let victim = sim.core(3).identity().clone();
    for observer in (0..6).filter(|&i| i != 3) {
        let dead = sim
            .seen
            .iter()
            .find(|s| s.observer == observer && s.event == MemberEvent::Dead(victim.clone()));
        let dead = dead.unwrap_or_else(|| panic!("member {observer} never declared it dead"));
        assert!(dead.at - killed_at < S(6), "took {:?}", dead.at - killed_at);
        assert_eq!(states(&sim, observer)[3], MemberState::Dead);
    }
    // Nobody else was declared dead.
    assert!(sim
        .seen
        .iter()
        .all(|s| !matches!(&s.event, MemberEvent::Dead(id) if *id != victim)));
}

#[test]
fn graceful_leave_shows_left_not_dead() {
    let mut sim = converged(5, 3);
    let leaver = sim.core(2).identity().clone();
    sim.leave(2);
    sim.run_for(S(10));
    for observer in [0, 1, 3, 4] {
        assert_eq!(
            states(&sim, observer)[2],
            MemberState::Left,
            "observer {observer}"
        );
        assert!(sim
            .seen
            .iter()
            .any(|s| s.observer == observer && s.event == MemberEvent::Left(leaver.clone())));
    }
    assert!(!sim
        .seen
        .iter()
        .any(|s| matches!(s.event, MemberEvent::Dead(_))));
}

#[test]
fn restarted_member_comes_back_alive_under_a_new_generation() {
    let mut sim = converged(5, 4);
    sim.kill(1);
    sim.run_for(S(10));
    assert_eq!(states(&sim, 0)[1], MemberState::Dead);
    sim.restart(1, 0);
    sim.run_for(S(5));
    for observer in 0..5 {
        let view = sim.core(observer).view();
        assert_eq!(
            view[1].state,
            MemberState::Alive,
            "observer {observer}: {view:?}"
        );
        assert_eq!(view[1].gen, 2);
    }
}

#[test]
fn a_member_wrongly_declared_dead_comes_back_under_a_new_generation() {
    let mut sim = converged(6, 6);
    // Cut off long enough to be declared dead, then back.
    sim.isolate(4, true);
    sim.run_for(S(10));
    assert_eq!(states(&sim, 0)[4], MemberState::Dead);
    sim.isolate(4, false);
    sim.run_for(S(5));
    let renewed = sim.core(4).identity().clone();
    assert_eq!(renewed.gen, 2);
    assert!(sim
        .seen
        .iter()
        .any(|s| s.observer == 4 && s.event == MemberEvent::Rejoined(renewed.clone())));
    for observer in 0..6 {
        let view = sim.core(observer).view();
        assert!(
            view.iter().all(|r| r.state == MemberState::Alive),
            "observer {observer}: {view:?}"
        );
        assert_eq!(view[4].gen, 2, "observer {observer}");
    }
}

#[test]
fn no_false_deaths_at_five_percent_loss() {
    let mut cfg = SimConfig::new(20, 5);
    cfg.loss = 0.05;
    cfg.publish_info = true;
    let mut sim = Sim::new(cfg);
    sim.run_for(S(60));
    let dead = sim
        .seen
        .iter()
        .filter(|s| matches!(s.event, MemberEvent::Dead(_)))
        .count();
    assert_eq!(dead, 0, "false death verdicts at 5% loss");
    for i in 0..20 {
        assert!(states(&sim, i).iter().all(|s| s.is_active()));
        assert_eq!(sim.core(i).view().len(), 20);
    }
}

#[test]
fn same_seed_same_run() {
    let run = |seed| {
        let mut cfg = SimConfig::new(8, seed);
        cfg.loss = 0.05;
        cfg.publish_info = true;
        let mut sim = Sim::new(cfg);
        sim.run_for(S(3));
        sim.kill(5);
        sim.run_for(S(8));
        sim
    };
    let (a, b) = (run(9), run(9));
    assert_eq!(a.seen, b.seen);
    assert_eq!(a.bytes_sent, b.bytes_sent);
    assert_eq!(a.core(0).view(), b.core(0).view());
    assert_ne!(
        run(10).bytes_sent,
        a.bytes_sent,
        "another seed, another run"
    );
}
