//! The `[[hooks]]` tables: defaults, and every problem named.

use super::*;

fn raw(toml_text: &str) -> Vec<RawHook> {
    #[derive(Deserialize)]
    struct Doc {
        hooks: Vec<RawHook>,
    }
    toml::from_str::<Doc>(toml_text).unwrap().hooks
}

fn check(toml_text: &str) -> (Vec<HookConfig>, Vec<String>) {
    let mut problems = vec![];
    let hooks = validate(raw(toml_text), Path::new("/etc/cutover"), &mut problems);
    (hooks, problems)
}

#[test]
fn a_webhook_and_a_command_with_their_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("hook.secret");
    std::fs::write(&secret, "s3cret\n").unwrap();
    let (hooks, problems) = check(&format!(
        r#"
        [[hooks]]
        name = "chat"
        events = ["switch", "auto_rollback", "switch"]
        url = "https://hooks.example.test:8443/cutover?x=1"
        secret_file = "{}"
        [[hooks]]
        name = "pager"
        events = ["fault"]
        command = ["/usr/local/bin/page", "--team", "edge"]
        timeout_ms = 2000
        retries = 0
        backoff_ms = 100
        "#,
        secret.display()
    ));
    assert_eq!(problems, Vec::<String>::new());
    assert_eq!(
        hooks[0].events,
        [EventKind::Switch, EventKind::AutoRollback]
    );
    assert_eq!(
        hooks[0].action,
        HookAction::Http {
            url: HookUrl {
                tls: true,
                host: "hooks.example.test".into(),
                port: 8443,
                path: "/cutover?x=1".into()
            },
            secret: Some(Secret(b"s3cret".to_vec())),
            ca_file: None,
        }
    );
    assert_eq!(
        hooks[0].timeout,
        Duration::from_millis(DEFAULT_HOOK_TIMEOUT_MS)
    );
    assert_eq!(hooks[0].retries, DEFAULT_HOOK_RETRIES);
    assert_eq!(hooks[1].timeout, Duration::from_secs(2));
    assert_eq!((hooks[1].retries, hooks[1].backoff.as_millis()), (0, 100));
}

#[test]
fn every_problem_is_named() {
    let (hooks, problems) = check(
        r#"
        [[hooks]]
        name = "a"
        events = ["switched"]
        url = "ftp://x"
        [[hooks]]
        name = "a"
        events = []
        command = ["notify"]
        timeout_ms = 0
        retries = 11
        backoff_ms = 60001
        [[hooks]]
        name = "b"
        events = ["fault"]
        [[hooks]]
        name = "c"
        events = ["fault"]
        url = "http://127.0.0.1:9/"
        secret_file = "/nonexistent/secret"
        "#,
    );
    assert!(hooks.is_empty(), "{hooks:?}");
    let expected = [
        "hooks[0] (a).events: \"switched\" is not an event; the events are switch, canary,",
        "hooks[0] (a).url: \"ftp://x\" must start with http:// or https://",
        "hooks[1] (a).name: another hook has this name",
        "hooks[1] (a).events: empty",
        "hooks[1] (a).command: \"notify\" is not an absolute path",
        "hooks[1] (a).timeout_ms: 0 is not 1 to 300000",
        "hooks[1] (a).retries: 11 is more than 10",
        "hooks[1] (a).backoff_ms: 60001 is more than 60000",
        "hooks[2] (b).url, command: give one of them",
        "hooks[3] (c).secret_file: /nonexistent/secret: ",
    ];
    for e in expected {
        assert!(
            problems.iter().any(|p| p.starts_with(e)),
            "{e} not in {problems:#?}"
        );
    }
    assert_eq!(problems.len(), expected.len(), "{problems:#?}");
}

#[test]
fn every_event_name_parses_back() {
    for e in EventKind::ALL {
        assert_eq!(EventKind::parse(e.as_str()), Some(e));
    }
    assert_eq!(EventKind::parse("Switch"), None);
}

#[test]
fn the_shipped_example_hooks_are_valid_once_uncommented() {
    let example = include_str!("../../../../examples/cutover.toml");
    let start = example.find("# [[hooks]]").expect("the example has hooks");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hook.secret"), "k").unwrap();
    std::fs::write(dir.path().join("hooks-ca.pem"), "").unwrap();
    let text: String = example[start..]
        .lines()
        .map(|l| l.strip_prefix("# ").unwrap_or(l))
        .map(|l| l.replace("/etc/cutover/", &format!("{}/", dir.path().display())))
        .collect::<Vec<_>>()
        .join("\n");
    let (hooks, problems) = check(&text);
    assert_eq!(problems, Vec::<String>::new());
    assert_eq!(hooks.len(), 2);
}

#[test]
fn the_docs_list_every_event() {
    let docs = include_str!("../../../../docs/HOOKS.md");
    let readme = include_str!("../../../../README.md");
    for e in EventKind::ALL {
        assert!(
            docs.contains(&format!("| `{e}` |")),
            "docs/HOOKS.md lacks {e}"
        );
        assert!(readme.contains(&format!("`{e}`")), "README.md lacks {e}");
    }
}
