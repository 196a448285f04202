//! Prints the agent's own per-step timings of a few flips on a service with N routes:
//! where a switch spends its time. `cargo run --release -p cutover-tests --example
//! flip_steps [ROUTES]` (default 100000).

use cutover_tests::agent::{Setup, SetupOptions};

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map_or(100_000, |a| a.parse().expect("ROUTES"));
    let mut routes: Vec<String> = vec!["www.example.test".into()];
    routes.extend((0..n).map(|i| format!("h{i}.example.test")));
    let s = Setup::started(SetupOptions {
        routes,
        routes_in_file: true,
        ..SetupOptions::default()
    })
    .expect("haproxy installed");
    for colour in ["green", "blue", "green", "blue", "green"] {
        let (code, reply) = s.cli_json(&["switch", "web", colour]);
        assert_eq!(code, 0, "{reply}");
        println!("{colour}: {}", reply["data"]["timings_ms"]);
    }
}
