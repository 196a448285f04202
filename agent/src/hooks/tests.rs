//! The running hooks with receivers on loopback (plain and TLS): retries with backoff, the
//! signature, a full queue dropping events without waiting, a reload replacing the hooks,
//! and `cutover check` loading an https hook's trust roots.

use std::time::Instant;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;
use crate::config::{EventKind, HookUrl};
use crate::protocol::{Colour, ServiceChange, ServiceState};
use crate::requester::Requester;
use crate::store::Outcome;

#[test]
fn backoff_doubles_up_to_its_cap() {
    let first = Duration::from_millis(500);
    let waits: Vec<u128> = (0..9).map(|r| backoff(first, r).as_millis()).collect();
    assert_eq!(
        waits,
        [500, 1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000]
    );
    assert_eq!(backoff(first, 40).as_millis(), 60_000);
    assert_eq!(backoff(Duration::ZERO, 3), Duration::ZERO);
}

fn switch_entry(generation: u64) -> JournalEntry {
    let mut to = ServiceState::live_on(Colour::Green);
    to.previous = Some(Colour::Blue);
    JournalEntry {
        generation,
        time_ms: 1,
        requester: Requester::local(Some(1000), Some(1000), Some(7)),
        request: json!({"op": "switch", "service": "web", "colour": "green"}),
        result: Outcome::Ok,
        message: "web: blue -> green".into(),
        data: json!({"services": [ServiceChange {
            service: "web".into(),
            from: Some(ServiceState::live_on(Colour::Blue)),
            to: Some(to),
        }]}),
        verb: None,
        reason: None,
        asked_by: None,
    }
}

fn http_hook(name: &str, url: HookUrl, retries: u32, secret: Option<&[u8]>) -> HookConfig {
    HookConfig {
        name: name.into(),
        events: vec![EventKind::Switch],
        action: HookAction::Http {
            url,
            secret: secret.map(|s| crate::config::hooks::Secret(s.to_vec())),
            ca_file: None,
        },
        timeout: Duration::from_secs(2),
        retries,
        backoff: Duration::from_millis(50),
    }
}

/// A receiver that answers its connections with `statuses` in turn and hands each request
/// (head and body) to the returned channel, with the time it arrived.
async fn receiver(statuses: Vec<u16>) -> (HookUrl, mpsc::UnboundedReceiver<(Instant, String)>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = HookUrl::parse(&format!("http://{}/in", listener.local_addr().unwrap())).unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        for status in statuses {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            // The request ends where its Content-Length says.
            loop {
                let n = s.read(&mut buf).await.unwrap();
                got.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&got).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("Content-Length: "))
                        .unwrap()
                        .parse()
                        .unwrap();
                    if body.len() >= len || n == 0 {
                        tx.send((Instant::now(), text)).unwrap();
                        break;
                    }
                }
            }
            let answer = format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n");
            s.write_all(answer.as_bytes()).await.unwrap();
        }
    });
    (url, rx)
}

async fn until_counted(m: &Metrics, series: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !m.render().contains(series) {
        assert!(
            Instant::now() < deadline,
            "{series} never in:\n{}",
            m.render()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_failed_post_is_retried_after_the_backoff_and_signed_each_time() {
    let (url, mut got) = receiver(vec![503, 500, 200]).await;
    let metrics = Metrics::new();
    let hooks = Hooks::start(&[http_hook("chat", url, 2, Some(b"k3y"))], metrics.clone());
    hooks.offer(&switch_entry(5));
    let mut times = vec![];
    for _ in 0..3 {
        let (at, request) = got.recv().await.unwrap();
        times.push(at);
        let (head, body) = request.split_once("\r\n\r\n").unwrap();
        let expected = http::signature(b"k3y", body.as_bytes());
        assert!(
            head.contains(&format!("\r\nX-Cutover-Signature: {expected}")),
            "{head}"
        );
        assert!(head.contains("\r\nX-Cutover-Event: switch"), "{head}");
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(
            (v["event"].as_str(), v["generation"].as_u64()),
            (Some("switch"), Some(5))
        );
    }
    assert!(
        times[1] - times[0] >= Duration::from_millis(50),
        "{times:?}"
    );
    assert!(
        times[2] - times[1] >= Duration::from_millis(100),
        "{times:?}"
    );
    until_counted(
        &metrics,
        "cutover_hook_runs_total{hook=\"chat\",result=\"ok\"} 1",
    )
    .await;
    assert!(metrics
        .render()
        .contains("cutover_hook_runs_total{hook=\"chat\",result=\"failed\"} 0"));
}

#[tokio::test]
async fn a_client_error_fails_at_once_and_is_counted() {
    let (url, mut got) = receiver(vec![404, 200]).await;
    let metrics = Metrics::new();
    let hooks = Hooks::start(&[http_hook("chat", url, 3, None)], metrics.clone());
    hooks.offer(&switch_entry(5));
    let (_, request) = got.recv().await.unwrap();
    assert!(!request.contains("X-Cutover-Signature"), "{request}");
    until_counted(
        &metrics,
        "cutover_hook_runs_total{hook=\"chat\",result=\"failed\"} 1",
    )
    .await;
    assert!(got.try_recv().is_err(), "a 404 was retried");
}

#[tokio::test]
async fn a_hanging_hook_fills_its_queue_and_offering_never_waits() {
    // A receiver that accepts and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = HookUrl::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
    let _held = tokio::spawn(async move {
        let mut open = vec![];
        while let Ok((s, _)) = listener.accept().await {
            open.push(s);
        }
    });
    let metrics = Metrics::new();
    let mut hook = http_hook("slow", url, 0, None);
    hook.timeout = Duration::from_secs(60);
    let hooks = Hooks::start(&[hook], metrics.clone());
    let started = Instant::now();
    for g in 0..(QUEUE_DEPTH as u64 + 10) {
        hooks.offer(&switch_entry(g));
    }
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    // One is being delivered, QUEUE_DEPTH wait: at least 9 of the 74 were dropped.
    let text = metrics.render();
    let dropped: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("cutover_hook_dropped_total{hook=\"slow\"} "))
        .unwrap()
        .parse()
        .unwrap();
    assert!((9..=10).contains(&dropped), "{text}");
}

#[tokio::test]
async fn events_a_hook_does_not_name_are_not_sent_and_a_reload_replaces_hooks() {
    let (url, mut got) = receiver(vec![200, 200]).await;
    let metrics = Metrics::new();
    let mut hook = http_hook("faults", url.clone(), 0, None);
    hook.events = vec![EventKind::Fault];
    let hooks = Hooks::start(std::slice::from_ref(&hook), metrics.clone());
    hooks.offer(&switch_entry(1));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(got.try_recv().is_err(), "a switch reached a hook of faults");

    let renamed = http_hook("switches", url, 0, None);
    hooks.sync(std::slice::from_ref(&renamed));
    hooks.offer(&switch_entry(2));
    let (_, request) = got.recv().await.unwrap();
    assert!(request.contains("\"generation\":2"), "{request}");
    until_counted(
        &metrics,
        "cutover_hook_runs_total{hook=\"switches\",result=\"ok\"} 1",
    )
    .await;
    assert!(
        !metrics.render().contains("hook=\"faults\""),
        "{}",
        metrics.render()
    );
}

#[test]
fn check_names_an_https_hook_whose_roots_do_not_load() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("ca.pem");
    std::fs::write(&bad, "not a certificate\n").unwrap();
    let mut hook = http_hook(
        "secure",
        HookUrl::parse("https://h.test/").unwrap(),
        0,
        None,
    );
    hook.action = HookAction::Http {
        url: HookUrl::parse("https://h.test/").unwrap(),
        secret: None,
        ca_file: Some(bad.clone()),
    };
    let plain = http_hook("plain", HookUrl::parse("http://h.test/").unwrap(), 0, None);
    let problems = trust_problems(&[plain, hook]);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("hooks[1] (secure).ca_file: "),
        "{problems:?}"
    );
    assert!(
        problems[0].contains(&bad.display().to_string()),
        "{problems:?}"
    );
}

#[tokio::test]
async fn an_https_hook_verifies_its_receiver_with_ca_file() {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let dir = tempfile::tempdir().unwrap();
    crate::peers::tls::make_ca(dir.path(), None).unwrap();
    crate::peers::tls::issue(dir.path(), None, "localhost", dir.path()).unwrap();
    let certs: Vec<_> = CertificateDer::pem_file_iter(dir.path().join("localhost.pem"))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.path().join("localhost.key")).unwrap();
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, mut got) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tls = acceptor.accept(tcp).await.unwrap();
        let mut buf = vec![0u8; 8192];
        let n = tls.read(&mut buf).await.unwrap();
        tx.send(String::from_utf8_lossy(&buf[..n]).to_string())
            .unwrap();
        tls.write_all(b"HTTP/1.1 202 Accepted\r\n\r\n")
            .await
            .unwrap();
        tls.shutdown().await.unwrap();
    });
    let url = HookUrl::parse(&format!("https://localhost:{port}/secure")).unwrap();
    let mut hook = http_hook("secure", url, 0, None);
    hook.action = match hook.action {
        HookAction::Http { url, secret, .. } => HookAction::Http {
            url,
            secret,
            ca_file: Some(dir.path().join("ca.pem")),
        },
        other => other,
    };
    assert_eq!(
        trust_problems(std::slice::from_ref(&hook)),
        Vec::<String>::new()
    );
    let metrics = Metrics::new();
    let hooks = Hooks::start(&[hook], metrics.clone());
    hooks.offer(&switch_entry(3));
    let request = got.recv().await.unwrap();
    assert!(
        request.starts_with("POST /secure HTTP/1.1\r\n"),
        "{request}"
    );
    assert!(
        request.contains(&format!("\r\nHost: localhost:{port}\r\n")),
        "{request}"
    );
    until_counted(
        &metrics,
        "cutover_hook_runs_total{hook=\"secure\",result=\"ok\"} 1",
    )
    .await;
}
