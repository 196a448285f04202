//! The remote API on loopback against an agent over the in-memory proxy: every verb gives
//! the same reply over gRPC as over the unix socket; roles, refused certificates and the
//! bounds (message size, calls per identity, a stream nobody reads).

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::agent_with;
use crate::client::unix;
use crate::config::TlsFiles;
use crate::control::{self, Bounds, GroupLookup, Limits, PeerCredentials, Requests};
use crate::grpc::client::{self, RemoteError};
use crate::grpc::{listen, pb, service::Service};
use crate::peers::tls::{self, IssueOptions};
use crate::protocol::{Colour, Command, Desired, MapView, Reply, Request, Status};
use crate::requester::{Identity, Requester};

const TIMEOUT: Duration = Duration::from_secs(20);

/// The CA, the agent's certificate and the clients': `ci` (admin), `deployer` (operate),
/// `viewer` (read), `nobody` (no role), `late` (admin, expired); `stranger` from another CA.
fn certificates(dir: &Path) -> PathBuf {
    let tls = dir.join("tls");
    tls::make_ca(&tls, None).unwrap();
    for name in ["lb1", "ci", "deployer", "viewer", "nobody"] {
        tls::issue(&tls, None, name, &tls).unwrap();
    }
    let expired = IssueOptions {
        expired: true,
        ..IssueOptions::default()
    };
    tls::issue_with(&tls, None, "late", &tls, &expired).unwrap();
    let other = dir.join("other");
    tls::make_ca(&other, None).unwrap();
    tls::issue(&other, None, "stranger", &tls).unwrap();
    tls
}

fn remote_toml(dir: &Path, tls: &Path) -> String {
    let files =
        crate::engine::tests::admission::SHARE_MAP.replace("{d}", &dir.display().to_string());
    format!(
        r#"{files}[remote]
listen = "127.0.0.1:0"
ca = "{t}/ca.pem"
cert = "{t}/lb1.pem"
key = "{t}/lb1.key"
max_streams_per_client = 2
max_message_bytes = 65536
handshake_timeout_ms = 2000
{clients}"#,
        t = tls.display(),
        clients = clients(&[
            ("dns:ci", "admin"),
            ("dns:late", "admin"),
            ("dns:deployer", "operate"),
            ("dns:viewer", "read"),
        ]),
    )
}

/// `[[remote.clients]]` tables, one per identity and role.
fn clients(roles: &[(&str, &str)]) -> String {
    roles
        .iter()
        .map(|(identity, role)| {
            format!("[[remote.clients]]\nidentity = {identity:?}\nrole = {role:?}\n")
        })
        .collect()
}

/// An agent over the in-memory proxy serving its unix socket and its remote API.
struct Served {
    socket: PathBuf,
    addr: String,
    tls: PathBuf,
    tasks: Vec<JoinHandle<()>>,
    _stop: watch::Sender<bool>,
}

impl Drop for Served {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn serve(dir: &Path) -> Served {
    let tls = certificates(dir);
    let (mut agent, mut queue) = agent_with(dir, &remote_toml(dir, &tls)).await;
    let config = agent.engine.config().clone();
    let engine = agent.local.clone().unwrap();
    let (events_tx, events) = watch::channel(agent.engine.event());
    let engine_task = tokio::spawn(async move {
        while let Some(env) = queue.recv().await {
            agent.receive(env, &mut queue).await;
            super::super::publish_event(&agent.engine, &events_tx);
        }
    });
    let (stop, stopped) = watch::channel(false);
    let socket = dir.join("cutover.sock");
    let limits = Limits {
        max_connections: 8,
        max_line: 1 << 20,
        read_timeout: TIMEOUT,
        groups: GroupLookup::new(false),
    };
    let handshake = PeerCredentials {
        groups: limits.groups.clone(),
        ..PeerCredentials::default()
    };
    let bounds = Bounds {
        name: "control",
        max_connections: 8,
        drain_grace: control::DRAIN_GRACE,
        budget: None,
    };
    let listener = control::bind(&socket, 0o600, None).await.unwrap();
    let requests = Requests::new(handshake, limits, engine.clone());
    let stop_socket = super::super::servers::stopped(stopped.clone());
    let socket_task = tokio::spawn(control::serve(listener, bounds, requests, stop_socket));
    let remote = config.remote.clone().unwrap();
    let listener = listen::bind(&remote).await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let service = Service::new(engine, events, remote.max_streams_per_client, TIMEOUT);
    let stop_remote = super::super::servers::stopped(stopped);
    let remote_task = tokio::spawn(async move {
        listen::serve(listener, &remote, service, stop_remote)
            .await
            .unwrap();
    });
    Served {
        socket,
        addr,
        tls,
        tasks: vec![engine_task, socket_task, remote_task],
        _stop: stop,
    }
}

impl Served {
    fn files(&self, client: &str) -> TlsFiles {
        TlsFiles {
            ca: self.tls.join("ca.pem"),
            cert: self.tls.join(format!("{client}.pem")),
            key: self.tls.join(format!("{client}.key")),
        }
    }

    async fn connect(
        &self,
        client: &str,
        name: &str,
    ) -> Result<pb::cutover_client::CutoverClient<tonic::transport::Channel>, RemoteError> {
        let config = tls::client_config_h2(&self.files(client)).unwrap();
        client::connect(&config, name, &self.addr, TIMEOUT).await
    }

    /// One call of `client` (named lb1).
    async fn remote(&self, client: &str, command: &Command) -> Result<Reply, RemoteError> {
        let mut c = self.connect(client, "lb1").await?;
        client::call(&mut c, "lb1", command, TIMEOUT).await
    }

    async fn local(&self, command: &Command) -> Reply {
        unix(&self.socket, command, TIMEOUT, |_| {}).await.unwrap()
    }
}

/// A reply as JSON with what differs between two agents alike taken out: their directory,
/// times and durations (`*_ms`), and who asked.
fn normal(reply: &Reply, dir: &Path) -> serde_json::Value {
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(o) => {
                o.retain(|k, _| !k.ends_with("_ms") && k != "requester");
                o.values_mut().for_each(strip);
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let text = serde_json::to_string(reply).unwrap();
    let mut v: serde_json::Value =
        serde_json::from_str(&text.replace(&dir.display().to_string(), "DIR")).unwrap();
    strip(&mut v);
    v
}

fn change(request: Request, dry_run: bool) -> Command {
    Command::change(request, false, dry_run)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_verb_gives_the_same_reply_over_grpc_as_over_the_socket() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (socket_side, grpc_side) = (serve(a.path()).await, serve(b.path()).await);
    let web = || "web".to_owned();
    let apply = Request::Set {
        services: [("web", Colour::Green), ("api", Colour::Green)]
            .into_iter()
            .map(|(s, c)| (s.to_owned(), Desired::routing(c, None)))
            .collect(),
    };
    let commands = [
        Command::Status,
        change(
            Request::Switch {
                service: web(),
                colour: Colour::Green,
            },
            true,
        ),
        change(
            Request::Switch {
                service: web(),
                colour: Colour::Green,
            },
            false,
        ),
        change(
            Request::Canary {
                service: web(),
                colour: Colour::Blue,
                percent: 10,
            },
            false,
        ),
        change(Request::Promote { service: web() }, false),
        change(
            Request::Canary {
                service: web(),
                colour: Colour::Green,
                percent: 20,
            },
            false,
        ),
        change(Request::Abort { service: web() }, false),
        change(Request::Rollback { service: web() }, false),
        change(
            Request::Drain {
                service: web(),
                colour: Colour::Blue,
            },
            false,
        ),
        change(
            Request::Undrain {
                service: web(),
                colour: Colour::Blue,
            },
            false,
        ),
        change(apply.clone(), true),
        change(apply, false),
        change(Request::Promote { service: web() }, false),
        // A stale generation is refused alike, with its reason journaled on both sides.
        Command::Change(crate::protocol::Mutation {
            request: Request::Abort { service: web() },
            force: false,
            dry_run: false,
            local: false,
            terms: crate::protocol::Terms {
                reason: Some("CHG-5".parse().unwrap()),
                if_generation: Some(999),
            },
        }),
        Command::MapShow {
            name: "routes".into(),
            view: MapView::Desired,
        },
        Command::MapShow {
            name: "routes".into(),
            view: MapView::Diff,
        },
        Command::MapShow {
            name: "nope".into(),
            view: MapView::Live,
        },
        Command::history(Some(web()), 100),
        Command::history(None, 3),
        Command::ClusterStatus,
        Command::Status,
    ];
    for command in &commands {
        let local = socket_side.local(command).await;
        let remote = grpc_side.remote("ci", command).await.unwrap();
        assert_eq!(
            normal(&local, a.path()),
            normal(&remote, b.path()),
            "{}",
            crate::protocol::encode(command)
        );
    }
    // Plan is the dry run of any change, as `dry_run` on the socket.
    let dry = change(
        Request::Switch {
            service: web(),
            colour: Colour::Blue,
        },
        true,
    );
    let local = socket_side.local(&dry).await;
    let Ok(crate::grpc::convert::Call::Change(mut message)) = crate::grpc::convert::call(&dry)
    else {
        panic!("a switch is a change");
    };
    if let Some(pb::change::Change::Switch(r)) = message.change.as_mut() {
        r.options = None;
    }
    let mut c = grpc_side.connect("ci", "lb1").await.unwrap();
    let planned = c.plan(message).await.unwrap().into_inner();
    let remote = crate::grpc::convert::from_reply(planned);
    assert!(remote.message.starts_with("dry run"), "{remote:?}");
    assert_eq!(normal(&local, a.path()), normal(&remote, b.path()));
    // Metrics count durations: the same kind of answer, not the same numbers.
    let local = socket_side.local(&Command::Metrics).await;
    let remote = grpc_side.remote("ci", &Command::Metrics).await.unwrap();
    assert_eq!((local.status, remote.status), (Status::Ok, Status::Ok));
    assert_eq!(local.data["content_type"], remote.data["content_type"]);
    // The remote changes are journaled with the client's identity.
    let history = Command::history(Some(web()), 1);
    let last = grpc_side.remote("viewer", &history).await.unwrap();
    let requester: Requester =
        serde_json::from_value(last.data["entries"][0]["requester"].clone()).unwrap();
    assert_eq!(
        requester,
        Requester::Remote {
            names: vec![Identity::Dns("ci".into())]
        }
    );
    assert_eq!(last.data["entries"][0]["requester"]["via"], "grpc:dns:ci");
    // Its reason too, and `history` finds it by the certificate's identity and the verb.
    let filtered = Command::History {
        service: None,
        limit: 5,
        user: Some("dns:ci".into()),
        verb: Some("abort".into()),
        since_ms: None,
        until_ms: None,
    };
    let found = grpc_side.remote("viewer", &filtered).await.unwrap();
    let entries = found.data["entries"].as_array().unwrap();
    let stale = entries
        .iter()
        .find(|e| e["data"]["if_generation"] == 999)
        .unwrap_or_else(|| panic!("{entries:?}"));
    assert_eq!(stale["reason"], "CHG-5", "{stale}");
    assert!(entries.iter().all(|e| e["verb"] == "abort"), "{entries:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_decide_and_refusals_name_the_identity_and_the_role() {
    let dir = tempfile::tempdir().unwrap();
    let served = serve(dir.path()).await;
    let switch = change(
        Request::Switch {
            service: "web".into(),
            colour: Colour::Green,
        },
        false,
    );
    let apply = change(
        Request::Set {
            services: [("web".to_owned(), Desired::routing(Colour::Green, None))].into(),
        },
        false,
    );
    let ok = served.remote("viewer", &Command::Status).await.unwrap();
    assert_eq!(ok.status, Status::Ok);
    match served.remote("viewer", &switch).await {
        Err(RemoteError::Denied { message, .. }) => assert!(
            message.contains("dns:viewer has role read and switch needs role operate"),
            "{message}"
        ),
        other => panic!("{other:?}"),
    }
    let switched = served.remote("deployer", &switch).await.unwrap();
    assert_eq!(switched.status, Status::Ok, "{switched:?}");
    match served.remote("deployer", &apply).await {
        Err(RemoteError::Denied { message, .. }) => {
            assert!(message.contains("needs role admin"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    // A valid certificate without a role: refused, named, journaled.
    match served.remote("nobody", &Command::Status).await {
        Err(RemoteError::Denied { message, .. }) => assert!(
            message.contains("dns:nobody has no role") && message.contains("needs role read"),
            "{message}"
        ),
        other => panic!("{other:?}"),
    }
    let history = Command::history(None, 1);
    let last = served.local(&history).await;
    assert_eq!(
        last.data["entries"][0]["requester"]["via"],
        "grpc:dns:nobody"
    );
    assert_eq!(last.data["entries"][0]["result"], "error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_certificates_are_authentication_failures() {
    let dir = tempfile::tempdir().unwrap();
    let served = serve(dir.path()).await;
    let failure = |r: Result<Reply, RemoteError>| match r {
        Err(RemoteError::Authentication { reason, .. }) => reason,
        other => panic!("not an authentication failure: {other:?}"),
    };
    // A client certificate of another CA.
    let reason = failure(served.remote("stranger", &Command::Status).await);
    assert!(
        reason.contains("refused this client's certificate"),
        "{reason}"
    );
    // An expired certificate of the right CA.
    let reason = failure(served.remote("late", &Command::Status).await);
    assert!(
        reason.contains("refused this client's certificate"),
        "{reason}"
    );
    // The server asked for by its address, which its certificate does not carry.
    let reason = match served.connect("ci", "127.0.0.1").await {
        Err(RemoteError::Authentication { reason, .. }) => reason,
        other => panic!("{:?}", other.map(|_| ())),
    };
    assert!(reason.contains("--remote-name"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounds_hold_for_large_messages_many_calls_and_streams_nobody_reads() {
    let dir = tempfile::tempdir().unwrap();
    let served = serve(dir.path()).await;
    // A message above max_message_bytes is refused before it is decoded.
    let services = (0..5000)
        .map(|i| {
            (
                format!("service-{i:05}"),
                Desired::routing(Colour::Green, None),
            )
        })
        .collect();
    match served
        .remote("ci", &change(Request::Set { services }, false))
        .await
    {
        Err(RemoteError::Refused { message, .. }) => {
            assert!(message.contains("too large"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    // Two Watch streams of `ci`, never read: its third call is refused, another
    // identity's calls go on, and so do the engine's changes.
    let mut c = served.connect("ci", "lb1").await.unwrap();
    let first = c.watch(pb::WatchRequest {}).await.unwrap().into_inner();
    let second = c.watch(pb::WatchRequest {}).await.unwrap().into_inner();
    match served.remote("ci", &Command::Status).await {
        Err(RemoteError::Refused { code, message, .. }) => {
            assert_eq!(code, tonic::Code::ResourceExhausted);
            assert!(
                message.contains("remote client dns:ci has 2 calls open"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
    for i in 0..40 {
        let colour = if i % 2 == 0 {
            Colour::Green
        } else {
            Colour::Blue
        };
        let switch = change(
            Request::Switch {
                service: "web".into(),
                colour,
            },
            false,
        );
        let reply = served.remote("deployer", &switch).await.unwrap();
        assert_eq!(reply.status, Status::Ok, "{reply:?}");
    }
    // Closing a stream frees its slot.
    drop(first);
    let mut freed = false;
    for _ in 0..200 {
        if served.remote("ci", &Command::Status).await.is_ok() {
            freed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(freed, "the slot of a closed stream stays taken");
    drop(second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_streams_the_state_at_every_change() {
    let dir = tempfile::tempdir().unwrap();
    let served = serve(dir.path()).await;
    let mut c = served.connect("viewer", "lb1").await.unwrap();
    let mut events = c.watch(pb::WatchRequest {}).await.unwrap().into_inner();
    let first = events.message().await.unwrap().unwrap();
    let switch = change(
        Request::Switch {
            service: "web".into(),
            colour: Colour::Green,
        },
        false,
    );
    served.remote("deployer", &switch).await.unwrap();
    loop {
        let event = tokio::time::timeout(TIMEOUT, events.message())
            .await
            .expect("an event after the switch")
            .unwrap()
            .unwrap();
        let data = crate::grpc::convert::json(event.data.unwrap());
        if data["services"]["web"]["live"] == "green" {
            assert!(event.generation > first.generation);
            break;
        }
    }
    // Nobody without a role watches.
    let mut c = served.connect("nobody", "lb1").await.unwrap();
    let refused = c.watch(pb::WatchRequest {}).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_connects_and_never_speaks_is_closed() {
    use tokio::io::AsyncReadExt;
    let dir = tempfile::tempdir().unwrap();
    let served = serve(dir.path()).await;
    let config = tls::client_config_h2(&served.files("ci")).unwrap();
    let tcp = tokio::net::TcpStream::connect(&served.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("lb1").unwrap();
    let mut stream = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .unwrap();
    // Past handshake_timeout the listener closes the connection (a bound for the test's
    // own wait, not a measured time).
    let mut buf = [0u8; 64];
    let closed = tokio::time::timeout(TIMEOUT, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "a silent client kept its connection");
    // The others are served meanwhile.
    assert!(served.remote("ci", &Command::Status).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_lists_the_service_as_grpcurl_asks() {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    let dir = tempfile::tempdir().unwrap();
    let served = serve(dir.path()).await;
    let config = tls::client_config_h2(&served.files("viewer")).unwrap();
    let channel = client::channel(&config, "lb1", &served.addr, TIMEOUT)
        .await
        .unwrap();
    let ask = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = ServerReflectionClient::new(channel)
        .server_reflection_info(futures_util::stream::iter([ask]))
        .await
        .unwrap()
        .into_inner();
    let answer = answers.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("{answer:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&crate::grpc::SERVICE.to_owned()),
        "{names:?}"
    );
}
