use super::*;

fn two() -> State {
    State::new([("api", Colour::Blue), ("web", Colour::Green)])
}

#[test]
fn switch_and_rollback() {
    let s = two();
    let (s1, c1) = s
        .apply(&Request::Switch {
            service: "api".into(),
            colour: Colour::Green,
        })
        .unwrap();
    assert_eq!(c1.generation, 1);
    assert_eq!(c1.services.len(), 1);
    assert_eq!(c1.services[0].service, "api");
    assert!(c1.services[0].live_moved());
    assert_eq!(c1.services[0].to.as_ref().unwrap().live, Colour::Green);
    assert_eq!(s1.services["api"].previous, Some(Colour::Blue));
    let (s2, c2) = s1
        .apply(&Request::Rollback {
            service: "api".into(),
        })
        .unwrap();
    assert_eq!(s2.services["api"].live, Colour::Blue);
    assert_eq!(s2.services["api"].previous, Some(Colour::Green));
    assert_eq!(c2.generation, 2);
}

#[test]
fn errors_change_nothing() {
    let s = two();
    let before = s.clone();
    assert_eq!(
        s.apply(&Request::Switch {
            service: "nope".into(),
            colour: Colour::Green
        })
        .unwrap_err(),
        StateError::UnknownService("nope".into())
    );
    assert_eq!(
        s.apply(&Request::Rollback {
            service: "api".into()
        })
        .unwrap_err(),
        StateError::NothingToRollBack("api".into())
    );
    assert_eq!(s, before);
}

#[test]
fn switch_to_live_colour_is_a_noop() {
    let s = two();
    let (s1, c) = s
        .apply(&Request::Switch {
            service: "web".into(),
            colour: Colour::Green,
        })
        .unwrap();
    assert!(c.is_empty());
    assert_eq!(s1, s);
}

#[test]
fn align_adds_and_removes() {
    let s = two();
    let conf: BTreeMap<_, _> = [
        ("api".to_owned(), Colour::Green),
        ("db".into(), Colour::Blue),
    ]
    .into_iter()
    .collect();
    let (n, c) = s.align_services(&conf);
    assert_eq!(n.services["api"].live, Colour::Blue, "existing kept");
    assert!(n.services.contains_key("db"));
    assert!(!n.services.contains_key("web"));
    assert_eq!(c.services.len(), 2);
    assert_eq!(n.generation, 1);
}

/// Property: applying diff(a, b) to a gives b, over every pair of states built from a
/// small universe of services (absent, or live blue/green with or without a canary or
/// a drained colour).
#[test]
fn diff_then_apply_gives_target() {
    let variants: Vec<Option<ServiceState>> = {
        let mut v = vec![None];
        for live in Colour::ALL {
            let base = ServiceState::live_on(live);
            v.push(Some(base.clone()));
            v.push(Some(ServiceState {
                canary: Some(Canary {
                    colour: live.other(),
                    percent: 10,
                    seed: 0,
                }),
                ..base.clone()
            }));
            v.push(Some(ServiceState {
                drained: [live.other()].into(),
                previous: Some(live.other()),
                ..base
            }));
        }
        v
    };
    let names = ["a", "b"];
    let mut states = Vec::new();
    for i in 0..variants.len() {
        for j in 0..variants.len() {
            let mut s = State::default();
            for (name, k) in names.iter().zip([i, j]) {
                if let Some(v) = &variants[k] {
                    s.services.insert((*name).into(), v.clone());
                }
            }
            states.push(s);
        }
    }
    for a in &states {
        for b in &states {
            let d = diff(a, b);
            assert_eq!(apply_diff(a, &d).services, b.services);
            assert_eq!(d.is_empty(), a.services == b.services);
        }
    }
}

#[test]
fn canary_promote_and_abort() {
    let s = two();
    let canary = |pct| Request::Canary {
        service: "api".into(),
        colour: Colour::Green,
        percent: pct,
    };
    assert_eq!(
        s.apply(&canary(0)).unwrap_err(),
        StateError::CanaryPercent(0)
    );
    assert_eq!(
        s.apply(&canary(100)).unwrap_err(),
        StateError::CanaryPercent(100)
    );
    assert!(matches!(
        s.apply(&Request::Canary {
            service: "api".into(),
            colour: Colour::Blue,
            percent: 10
        }),
        Err(StateError::CanaryOnLive { .. })
    ));
    let (s1, c) = s.apply(&canary(10)).unwrap();
    assert!(!c.services[0].live_moved());
    assert_eq!(s1.services["api"].canary_percent(), 10);
    let (s2, _) = s1.apply(&canary(50)).unwrap();
    assert_eq!(s2.services["api"].canary_percent(), 50);
    let (aborted, _) = s2
        .apply(&Request::Abort {
            service: "api".into(),
        })
        .unwrap();
    assert_eq!(
        aborted.services["api"],
        ServiceState {
            rollouts: 1,
            ..ServiceState::live_on(Colour::Blue)
        }
    );
    let (promoted, c) = s2
        .apply(&Request::Promote {
            service: "api".into(),
        })
        .unwrap();
    assert!(c.services[0].live_moved());
    let api = &promoted.services["api"];
    assert_eq!(
        (api.live, api.previous, api.canary),
        (Colour::Green, Some(Colour::Blue), None)
    );
    assert_eq!(
        promoted
            .apply(&Request::Promote {
                service: "api".into()
            })
            .unwrap_err(),
        StateError::NoCanary("api".into())
    );
}

#[test]
fn set_changes_several_services_in_one_generation() {
    let s = two();
    let services: BTreeMap<String, Desired> = [
        ("api".to_owned(), Desired::routing(Colour::Green, None)),
        (
            "web".to_owned(),
            Desired::routing(
                Colour::Green,
                Some(Canary {
                    colour: Colour::Blue,
                    percent: 20,
                    seed: 0,
                }),
            ),
        ),
    ]
    .into();
    let (n, c) = s
        .apply(&Request::Set {
            services: services.clone(),
        })
        .unwrap();
    assert_eq!(n.generation, s.generation + 1);
    assert_eq!(c.services.len(), 2);
    assert_eq!(n.services["api"].previous, Some(Colour::Blue));
    assert_eq!(n.services["web"].canary_percent(), 20);
    assert_eq!(
        traffic_targets(&s, &n),
        vec![
            ("api".to_owned(), Colour::Green),
            ("web".to_owned(), Colour::Blue)
        ]
    );
    // The same declaration again changes nothing.
    let (_, again) = n.apply(&Request::Set { services }).unwrap();
    assert!(again.is_empty());
    let bad: BTreeMap<String, Desired> =
        [("nope".to_owned(), Desired::routing(Colour::Blue, None))].into();
    assert!(s.apply(&Request::Set { services: bad }).is_err());
}

#[test]
fn drain_never_the_live_colour() {
    let s = two();
    let drain = |colour| Request::Drain {
        service: "api".into(),
        colour,
    };
    assert!(matches!(
        s.apply(&drain(Colour::Blue)),
        Err(StateError::DrainLive { .. })
    ));
    let (s1, _) = s.apply(&drain(Colour::Green)).unwrap();
    assert!(s1.services["api"].drained.contains(&Colour::Green));
    // Switching to a drained colour takes it out of drain.
    let (s2, _) = s1
        .apply(&Request::Switch {
            service: "api".into(),
            colour: Colour::Green,
        })
        .unwrap();
    assert!(s2.services["api"].drained.is_empty());
    let (s3, _) = s2.apply(&drain(Colour::Blue)).unwrap();
    let (s4, _) = s3
        .apply(&Request::Undrain {
            service: "api".into(),
            colour: Colour::Blue,
        })
        .unwrap();
    assert!(s4.services["api"].drained.is_empty());
}

#[test]
fn parses_state_written_by_format_1() {
    let old = r#"{"generation":7,"services":{"web":{"live":"green","previous":"blue"}}}"#;
    let s: State = serde_json::from_str(old).unwrap();
    assert_eq!(s.generation, 7);
    assert_eq!(s.format, 1);
    assert_eq!(s.services["web"].previous, Some(Colour::Blue));
}

#[test]
fn set_exactly_declares_previous_and_drains_and_refuses_contradictions() {
    let s = two();
    let mut wanted = ServiceState::live_on(Colour::Green);
    wanted.previous = Some(Colour::Blue);
    wanted.drained.insert(Colour::Blue);
    let set = |d: Desired| Request::Set {
        services: [("api".to_owned(), d)].into(),
    };
    let (n, _) = s.apply(&set(Desired::exactly(&wanted))).unwrap();
    assert_eq!(n.services["api"], wanted);
    // The same declaration on a host that got there another way changes nothing.
    let (_, again) = n.apply(&set(Desired::exactly(&wanted))).unwrap();
    assert!(again.is_empty());
    let mut previous_is_live = wanted.clone();
    previous_is_live.previous = Some(Colour::Green);
    assert!(matches!(
        s.apply(&set(Desired::exactly(&previous_is_live))),
        Err(StateError::PreviousIsLive { .. })
    ));
    let mut live_drained = wanted;
    live_drained.drained.insert(Colour::Green);
    assert!(matches!(
        s.apply(&set(Desired::exactly(&live_drained))),
        Err(StateError::DrainLive { .. })
    ));
}

#[test]
fn each_rollout_draws_its_own_seed_and_keeps_it_while_the_share_changes() {
    let canary = |colour, percent| Request::Canary {
        service: "api".into(),
        colour,
        percent,
    };
    let seed = |s: &State| s.services["api"].canary.map(|c| c.seed);
    let (first, _) = two().apply(&canary(Colour::Green, 10)).unwrap();
    let first_seed = seed(&first).unwrap();
    assert_ne!(first_seed, 0, "a new rollout is salted");
    // Growing the share is the same rollout: the same cohort, grown.
    let (grown, _) = first.apply(&canary(Colour::Green, 40)).unwrap();
    assert_eq!(seed(&grown), Some(first_seed));
    // Promoted, then the next release starts from 0 on the other colour: another seed.
    let (promoted, _) = grown
        .apply(&Request::Promote {
            service: "api".into(),
        })
        .unwrap();
    let (next, _) = promoted.apply(&canary(Colour::Blue, 10)).unwrap();
    let next_seed = seed(&next).unwrap();
    assert_ne!(next_seed, 0);
    assert_ne!(next_seed, first_seed, "the next rollout rotates the cohort");
    // An aborted rollout started again is a new rollout too.
    let (aborted, _) = next
        .apply(&Request::Abort {
            service: "api".into(),
        })
        .unwrap();
    let (again, _) = aborted.apply(&canary(Colour::Blue, 10)).unwrap();
    assert_ne!(seed(&again), Some(next_seed));
    // Another host holding the same record of the service, at another generation, draws
    // the same seed: a fleet's hosts agree on the cohort.
    let mut elsewhere = aborted.clone();
    elsewhere.generation += 17;
    let (there, _) = elsewhere.apply(&canary(Colour::Blue, 10)).unwrap();
    assert_eq!(seed(&there), seed(&again));
    // A declared canary without a seed keeps the running one; with one, it is taken.
    let declare = |percent, seed| Request::Set {
        services: BTreeMap::from([(
            "api".to_owned(),
            Desired::routing(
                Colour::Green,
                Some(Canary {
                    colour: Colour::Blue,
                    percent,
                    seed,
                }),
            ),
        )]),
    };
    let (declared, _) = again.apply(&declare(30, 0)).unwrap();
    assert_eq!(seed(&declared), seed(&again));
    let (declared, _) = declared.apply(&declare(30, 77)).unwrap();
    assert_eq!(seed(&declared), Some(77));
}

#[test]
fn the_seed_survives_a_save_and_a_state_without_seeds_still_loads() {
    let (s, _) = two()
        .apply(&Request::Canary {
            service: "api".into(),
            colour: Colour::Green,
            percent: 20,
        })
        .unwrap();
    let saved = serde_json::to_string(&s).unwrap();
    let loaded: State = serde_json::from_str(&saved).unwrap();
    assert_eq!(loaded, s);
    // Written before seeds existed: the canary loads unsalted (seed 0).
    let old = r#"{"format":1,"generation":3,"services":{"api":{"live":"blue",
        "canary":{"colour":"green","percent":20}}}}"#;
    let old: State = serde_json::from_str(old).unwrap();
    assert_eq!(old.services["api"].canary.unwrap().seed, 0);
    // Growing it keeps it unsalted: its clients keep their colour across the upgrade.
    let (grown, _) = old
        .apply(&Request::Canary {
            service: "api".into(),
            colour: Colour::Green,
            percent: 30,
        })
        .unwrap();
    assert_eq!(grown.services["api"].canary.unwrap().seed, 0);
}

#[test]
fn a_canary_to_a_drained_colour_says_it_ends_the_drain() {
    let (drained, _) = two()
        .apply(&Request::Drain {
            service: "api".into(),
            colour: Colour::Green,
        })
        .unwrap();
    let (canary, change) = drained
        .apply(&Request::Canary {
            service: "api".into(),
            colour: Colour::Green,
            percent: 10,
        })
        .unwrap();
    assert!(canary.services["api"].drained.is_empty());
    assert_eq!(change.services[0].canary_undrained(), Some(Colour::Green));
    // Growing it, or a canary to a colour that was not drained, ends no drain.
    let (_, grown) = canary
        .apply(&Request::Canary {
            service: "api".into(),
            colour: Colour::Green,
            percent: 20,
        })
        .unwrap();
    assert_eq!(grown.services[0].canary_undrained(), None);
}
