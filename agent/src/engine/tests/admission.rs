//! One admission: every mutating verb against every cause of refusal the engine knows, and
//! the dry run (`plan`) must give the same verdict, at the same step, for the same cause, as
//! the real change (`apply`).

use super::*;
use crate::engine::ErrorKind;
use crate::protocol::Desired;

/// The share map besides the two default maps: what a canary on HAProxy needs (`{d}`: the
/// fixture's directory).
pub(crate) const SHARE_MAP: &str = r#"
[[files]]
name = "routes"
template = "haproxy/routes.map"
path = "{d}/maps/routes.map"
kind = "map"
uses_state = false
values = "services"
[[files]]
name = "services"
template = "haproxy/services.map"
path = "{d}/maps/services.map"
kind = "map"
values = "backends"
[[files]]
name = "canary"
template = "haproxy/canary.map"
path = "{d}/maps/canary.map"
kind = "map"
values = "percent"
"#;

/// What is wrong, set up before the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Cause {
    /// Nothing: the verdict every other cause is compared with.
    None,
    /// The request names a service the config does not have.
    UnknownService,
    /// HAProxy without a map of canary shares.
    NoShareMap,
    /// Every server of every backend is down: the gate refuses.
    ServersDown,
    /// The services template fails for any new generation.
    TemplateError,
    /// The running proxy does not have the green backends a map would name.
    MissingBackend,
    /// A proxy without runtime maps whose checker refuses every staged config.
    ProxyCheckFails,
}

const CAUSES: [Cause; 7] = [
    Cause::None,
    Cause::UnknownService,
    Cause::NoShareMap,
    Cause::ServersDown,
    Cause::TemplateError,
    Cause::MissingBackend,
    Cause::ProxyCheckFails,
];

/// Every mutating verb, on the state [`setup`] leaves (web live on green after a switch, so
/// blue is previous and drained; api live on blue with a 10% canary on green).
fn requests(service_web: &str, service_api: &str) -> Vec<Request> {
    let web = || service_web.to_owned();
    let api = || service_api.to_owned();
    vec![
        Request::Switch {
            service: web(),
            colour: Colour::Blue,
        },
        Request::Switch {
            service: web(),
            colour: Colour::Green,
        },
        Request::Rollback { service: web() },
        Request::Canary {
            service: web(),
            colour: Colour::Blue,
            percent: 20,
        },
        Request::Canary {
            service: web(),
            colour: Colour::Green,
            percent: 20,
        },
        Request::Promote { service: api() },
        Request::Abort { service: api() },
        Request::Drain {
            service: api(),
            colour: Colour::Green,
        },
        Request::Drain {
            service: web(),
            colour: Colour::Green,
        },
        Request::Undrain {
            service: web(),
            colour: Colour::Blue,
        },
        Request::Set {
            services: [
                (web(), Desired::routing(Colour::Blue, None)),
                (api(), Desired::routing(Colour::Green, None)),
            ]
            .into(),
        },
    ]
}

/// A fixture in the state [`requests`] expects, with `cause` set up.
async fn setup(cause: Cause) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let maps = dir.path().join("maps");
    std::fs::create_dir_all(&maps).unwrap();
    let d = dir.path().display().to_string();
    let reload_only = cause == Cause::ProxyCheckFails;
    let files = SHARE_MAP.replace("{d}", &d);
    let make_config = |extra: &str| {
        Arc::new(if reload_only {
            nginx_config(dir.path())
        } else {
            config(dir.path(), &format!("{extra}\n{files}"))
        })
    };
    let config = make_config("");
    let map_files = ["routes.map", "services.map", "canary.map"].map(|f| maps.join(f));
    let (mut engine, proxy) = start(config, map_files.to_vec(), reload_only).await;
    let who = Requester::default();
    engine
        .apply(&switch("web", Colour::Green), &who, false)
        .await
        .unwrap();
    let canary = Request::Canary {
        service: "api".into(),
        colour: Colour::Green,
        percent: 10,
    };
    engine.apply(&canary, &who, false).await.unwrap();
    match cause {
        Cause::None | Cause::UnknownService => {}
        Cause::NoShareMap => {
            // The same services and state, with the default files: no share map.
            let plain = Arc::new(super::config(dir.path(), ""));
            engine.replace_config(plain).await.unwrap();
        }
        Cause::ServersDown => {
            for servers in proxy.state().servers.values_mut() {
                for s in servers {
                    s.up = false;
                }
            }
        }
        Cause::TemplateError => {
            let generation = engine.state().generation;
            let over = dir.path().join("override/haproxy");
            std::fs::create_dir_all(&over).unwrap();
            std::fs::write(
                over.join("services.map"),
                format!(
                    "{{% for name, service in services %}}{{{{ name }}}} {{{{ service.backend }}}}\n{{% endfor %}}\
                     {{% if generation > {generation} %}}{{{{ no_such_variable }}}}{{% endif %}}"
                ),
            )
            .unwrap();
            let over = format!(
                "override_dir = \"{}\"",
                dir.path().join("override").display()
            );
            engine.replace_config(make_config(&over)).await.unwrap();
        }
        Cause::MissingBackend => {
            proxy.state().backends.remove("web_green");
            proxy.state().backends.remove("api_green");
        }
        Cause::ProxyCheckFails => {
            proxy.state().fail_check = Some("[emerg] unknown directive".into());
        }
    }
    proxy.state().calls.clear();
    Fixture {
        _dir: dir,
        maps,
        engine,
        proxy,
    }
}

/// A verdict to compare: ok, or the step, the kind and the text of the refusal.
fn verdict<T>(r: &Result<T, ApplyError>) -> Result<(), (Step, ErrorKind, String)> {
    match r {
        Ok(_) => Ok(()),
        Err(e) => Err((e.step, e.kind, e.message())),
    }
}

#[tokio::test]
async fn a_dry_run_and_the_real_change_are_admitted_alike() {
    let mut refusals: BTreeMap<Cause, Vec<(Step, ErrorKind)>> = BTreeMap::new();
    for cause in CAUSES {
        let (web, api) = match cause {
            Cause::UnknownService => ("nope", "nada"),
            _ => ("web", "api"),
        };
        for (i, request) in requests(web, api).into_iter().enumerate() {
            // Each request on a fresh fixture: the real change must not see the plan's.
            let mut f = setup(cause).await;
            let state_before = f.engine.state().clone();
            let files_before = f.services_file();
            let planned = f.engine.plan(&request, false, None).await;
            assert_eq!(f.engine.state(), &state_before, "a plan changes nothing");
            assert_eq!(f.services_file(), files_before, "a plan writes nothing");
            assert!(
                f.proxy
                    .state()
                    .calls
                    .iter()
                    .all(|c| !c.starts_with("update_map") && c != "reload"),
                "a plan applies nothing: {:?}",
                f.proxy.state().calls
            );
            let applied = f.engine.apply(&request, &Requester::default(), false).await;
            assert_eq!(
                verdict(&planned),
                verdict(&applied),
                "{cause:?}, request {i} {request:?}: the dry run and the change disagree"
            );
            if let Err(e) = &applied {
                refusals.entry(cause).or_default().push((e.step, e.kind));
                assert_eq!(f.engine.state(), &state_before, "a refusal changes nothing");
            }
        }
    }
    // Each cause is refused where and as it should be (so the table cannot pass by
    // accepting, or refusing, everything).
    let kinds = |cause| -> Vec<(Step, ErrorKind)> {
        let mut k = refusals.get(&cause).cloned().unwrap_or_default();
        k.dedup();
        k
    };
    // A canary on the live colour; draining a colour that takes traffic (api's canary, web's
    // live colour).
    assert_eq!(
        kinds(Cause::None),
        vec![(Step::Request, ErrorKind::Refused)],
        "{refusals:?}"
    );
    assert_eq!(refusals[&Cause::None].len(), 3, "{refusals:?}");
    assert_eq!(
        refusals[&Cause::UnknownService].len(),
        requests("", "").len()
    );
    assert!(kinds(Cause::UnknownService)
        .iter()
        .all(|k| *k == (Step::Request, ErrorKind::Refused)));
    assert!(kinds(Cause::NoShareMap).contains(&(Step::Request, ErrorKind::NoShareMap)));
    assert!(kinds(Cause::ServersDown).contains(&(Step::Gate, ErrorKind::NotReady)));
    assert!(kinds(Cause::TemplateError).contains(&(Step::Render, ErrorKind::Template)));
    assert!(kinds(Cause::MissingBackend).contains(&(Step::Validate, ErrorKind::BadValue)));
    assert!(kinds(Cause::ProxyCheckFails).contains(&(Step::Validate, ErrorKind::ProxyCheck)));
}

/// `if_generation`: every mutating verb is refused when the state moved on (its plan too),
/// at the request step and before anything else, with a message naming both generations,
/// and journaled with its verb and reason; at the current generation it is admitted as
/// without it.
#[tokio::test]
async fn a_stale_generation_refuses_every_verb_and_the_current_one_admits_it() {
    use crate::protocol::Terms;
    use crate::store::HistoryFilter;
    for (i, request) in requests("web", "api").into_iter().enumerate() {
        let mut f = setup(Cause::None).await;
        let now = f.engine.state().generation;
        let state_before = f.engine.state().clone();
        for stale in [now - 1, now + 1] {
            let planned = f.engine.plan(&request, false, Some(stale)).await;
            let queued = Queued {
                terms: Terms {
                    reason: Some("CHG-7".parse().unwrap()),
                    if_generation: Some(stale),
                },
                ..Queued::new(
                    request.clone(),
                    Requester::local(Some(7), None, None),
                    false,
                )
            };
            let applied = f.engine.apply_queued(queued).await;
            let e = applied.as_ref().unwrap_err();
            assert_eq!((e.step, e.kind), (Step::Request, ErrorKind::Stale), "{i}");
            assert_eq!(
                e.message(),
                format!(
                    "the state is at generation {now}, not {stale} (if_generation): it \
                     changed since it was read; read it again and decide anew"
                ),
                "{i}"
            );
            assert_eq!(verdict(&planned), verdict(&applied), "{i}: plan and change");
            assert_eq!(
                f.engine.state(),
                &state_before,
                "{i}: a refusal changes nothing"
            );
            let last = f
                .engine
                .history(&HistoryFilter::default(), 1)
                .unwrap()
                .remove(0);
            assert_eq!(last.verb(), request.verb(), "{i}");
            assert_eq!(last.reason.as_ref().map(|r| r.as_str()), Some("CHG-7"));
            assert_eq!(last.data["if_generation"], stale, "{i}");
        }
        let unconditioned = setup(Cause::None)
            .await
            .engine
            .plan(&request, false, None)
            .await;
        let current = f.engine.plan(&request, false, Some(now)).await;
        assert_eq!(verdict(&current), verdict(&unconditioned), "{i}");
    }
}

/// Two changes of one batch that read the same generation: the first moves the state on,
/// so the second is refused, as it would be one after the other.
#[tokio::test]
async fn the_second_of_two_changes_on_one_generation_is_refused_within_a_batch() {
    use crate::protocol::Terms;
    let mut f = setup(Cause::None).await;
    let now = f.engine.state().generation;
    let on = |request: Request| Queued {
        terms: Terms {
            reason: None,
            if_generation: Some(now),
        },
        ..Queued::new(request, Requester::default(), false)
    };
    let results = f
        .engine
        .apply_batch(&[
            on(Request::Switch {
                service: "web".into(),
                colour: Colour::Blue,
            }),
            on(Request::Abort {
                service: "api".into(),
            }),
        ])
        .await;
    assert!(results[0].is_ok(), "{:?}", results[0]);
    let e = results[1].as_ref().unwrap_err();
    assert_eq!(e.kind, ErrorKind::Stale, "{e}");
    assert_eq!(f.engine.state().generation, now + 1);
    assert!(f.engine.state().services["api"].canary.is_some());
}
