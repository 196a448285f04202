//! Scenarios that the tests of both proxies run the same way against a started [`Setup`].
//! Here, those of the safety tests: a switch refused by the health gate, a failing colour
//! rolled back by the watch (timed from the first failing request), and clients that keep
//! their colour through a sticky canary. In [`agent`], those of the agent tests.

pub mod agent;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::agent::Setup;
use crate::Response;

/// `GET /` for `host` with these request headers, on a new connection.
pub fn get_with(s: &Setup, host: &str, headers: &[(&str, &str)]) -> Response {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(crate::http::request_with(
            s.frontend(),
            "GET",
            host,
            "/",
            headers,
        ))
        .expect("request")
}

/// HAProxy only: switches `web` to green, then puts green's only server into maintenance,
/// so its backend is DOWN and a post-switch watch must roll back.
pub fn switch_onto_a_dead_green(s: &Setup) {
    let (code, reply) = s.cli_json(&["switch", "web", "green"]);
    assert_eq!(code, 0, "{reply}");
    let admin = s
        .haproxy()
        .admin_command("set server web_green/g1 state maint");
    assert_eq!(admin, "\n");
}

/// Sends `n` requests for `host`, each on a new connection; returns how many `colour`
/// answered.
pub fn answered_by(s: &Setup, host: &str, colour: &str, n: usize) -> usize {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut count = 0;
        for _ in 0..n {
            let (_, body) = crate::get(s.frontend(), host).await.expect("request");
            count += usize::from(body == colour);
        }
        count
    })
}

/// With green answering 500 on its health URL, a switch of `web` to green is refused at the
/// gate with a message naming the server and what it answered; blue keeps serving `host`.
pub fn refused_by_the_health_gate(s: &Setup, host: &str) {
    s.green.set_failing(true);
    let (code, reply) = s.cli_json(&["switch", "web", "green"]);
    assert_eq!(code, 1, "{reply}");
    assert_eq!(reply["data"]["step"], "gate", "{reply}");
    let msg = reply["message"].as_str().unwrap();
    assert!(
        msg.contains("g1 (http://") && msg.contains("answered 500, expected 200"),
        "{msg}"
    );
    assert_eq!(s.get(host), (200, "blue".into()));
}

/// Switches `web` to green under a watch, serves healthy traffic, then makes green fail:
/// the watch must roll back to blue, with the reason in `status`, its rollback in the
/// journal and the metric. Returns the time from the first failing request to blue
/// answering again.
pub fn rolled_back_by_the_watch(s: &Setup, host: &str) -> Duration {
    let (code, reply) = s.cli_json(&["switch", "web", "green"]);
    assert_eq!(code, 0, "{reply}");
    let (_, status) = s.cli_json(&["status"]);
    assert_eq!(status["data"]["services"][0]["phase"]["phase"], "watching");
    // Healthy traffic first: the watch sees requests before the failures.
    for _ in 0..20 {
        assert_eq!(s.get(host), (200, "green".into()));
    }

    s.green.set_failing(true);
    let took = time_rollback(s, host, "blue");
    let (_, status) = s.cli_json(&["status"]);
    let web = &status["data"]["services"][0];
    assert_eq!(web["live"], "blue", "{web}");
    assert_eq!(web["phase"]["phase"], "rolled_back", "{web}");
    let reason = web["phase"]["reason"].as_str().unwrap();
    assert!(reason.contains("error rate"), "{web}");
    let (_, history) = s.cli_json(&["history", "web"]);
    let entries = history["data"]["entries"].as_array().unwrap();
    let by_watch: Vec<_> = entries
        .iter()
        .filter(|e| e["requester"]["via"] == "watch")
        .collect();
    assert!(
        by_watch.iter().any(|e| e["result"] == "rolled_back"
            && e["message"].as_str().unwrap().contains("error rate")),
        "{history}"
    );
    assert!(
        by_watch
            .iter()
            .any(|e| e["request"]["op"] == "rollback" && e["result"] == "ok"),
        "{history}"
    );
    assert_eq!(
        s.metric("cutover_rollbacks_total{reason=\"watch\"}"),
        Some(1.0)
    );
    assert_eq!(
        s.metric("cutover_rollbacks_total{reason=\"requested\"}"),
        Some(0.0)
    );
    took
}

/// With the live colour failing, requests `host` (new connections, about every 5 ms, for
/// at most 15 s) until `back` answers 200 again after a first 5xx; returns the time from
/// that first 5xx to the first answer of `back`. Panics with the agent's log otherwise.
pub fn time_rollback(s: &Setup, host: &str, back: &str) -> Duration {
    let mut first_failure: Option<Instant> = None;
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        let (code, body) = s.get(host);
        if code >= 500 && first_failure.is_none() {
            first_failure = Some(Instant::now());
        }
        if let Some(first) = first_failure {
            if code == 200 && body == back {
                return first.elapsed();
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!(
        "no rollback to {back} (a 5xx seen: {}):\n{}",
        first_failure.is_some(),
        s.agent().log()
    );
}

/// Runs a canary of `web` to green at 30% with 200 clients of 5 requests each (1,000
/// requests), growing the share to 60% after the third round. The service's sticky cookie
/// is set by the first answer and sent back from then on. Asserts that every client keeps
/// its colour while the share holds and that no canary client leaves the canary when it
/// grows; returns how many clients end on green.
pub fn sticky_canary_clients(s: &Setup, host: &str) -> usize {
    assert!(s.cli(&["canary", "web", "green", "30"]).status.success());
    let mut colours: BTreeMap<usize, String> = BTreeMap::new();
    let mut cookies: BTreeMap<usize, String> = BTreeMap::new();
    let with_cookie = |client: usize, cookies: &BTreeMap<usize, String>| {
        let headers: Vec<(&str, &str)> = cookies
            .get(&client)
            .map(|c| ("Cookie", c.as_str()))
            .into_iter()
            .collect();
        get_with(s, host, &headers)
    };
    for round in 0..5 {
        for client in 0..200usize {
            let response = with_cookie(client, &cookies);
            if round == 0 {
                let cookie = response
                    .header("set-cookie")
                    .and_then(|c| c.split(';').next())
                    .unwrap_or_else(|| panic!("no cookie on the first answer: {response:?}"))
                    .to_owned();
                cookies.insert(client, cookie);
                colours.insert(client, response.body.clone());
            } else {
                assert_eq!(
                    response.body, colours[&client],
                    "client {client} changed colour"
                );
                assert_eq!(
                    response.header("set-cookie"),
                    None,
                    "the cookie is set once"
                );
            }
        }
        if round == 2 {
            assert!(s.cli(&["canary", "web", "green", "60"]).status.success());
            for client in 0..200usize {
                let now = with_cookie(client, &cookies).body;
                if colours[&client] == "green" {
                    assert_eq!(now, "green", "canary client {client} left the canary");
                }
                colours.insert(client, now);
            }
        }
    }
    colours.values().filter(|c| *c == "green").count()
}
