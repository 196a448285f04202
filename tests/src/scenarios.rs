//! Scenarios that the safety tests of both proxies run the same way against a started
//! [`Setup`]: a rollback timed from the first failing request, and clients that keep their
//! colour through a sticky canary.

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
