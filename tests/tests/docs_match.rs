//! The reference docs against the running code: the metric families a real agent (with a
//! real HAProxy) serves, in both text formats, against the one list in docs/METRICS.md; and
//! the verbs `cutover --help` lists against the README's command-line table. A failure names
//! what is missing where, so a new family or verb is documented in the same change.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use cutover_tests::agent::{text, Setup, SetupOptions};
use cutover_tests::{cutover_binary, free_port, require_proxy};

/// The repository's root.
fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the workspace")
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(root().join(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

/// `GET /metrics` with an `Accept` header: content type and body.
fn scrape(s: &Setup, port: u16, accept: &str) -> (String, String) {
    let r = s.scrape(port, &[("Accept", accept)]);
    assert_eq!(r.status, 200, "{}", r.body);
    let content_type = r.header("content-type").unwrap_or_default().to_owned();
    (content_type, r.body)
}

/// A text exposition, parsed: each family's type (by the name the classic format gives it:
/// a counter's `_total`, an info's `_info`) and each sample's name and labels.
#[derive(Debug, Default)]
struct Exposition {
    families: BTreeMap<String, String>,
    samples: BTreeSet<String>,
}

/// Which text format a body is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Syntax {
    OpenMetrics,
    Classic,
}

/// Parses `body`, panicking with the line at fault where it breaks the format's rules: the
/// metadata lines each format has, every sample under its family's `# TYPE` with a suffix
/// the type allows, quoted label values, a number for a value, `# EOF` last in OpenMetrics
/// only.
fn parse(body: &str, syntax: Syntax) -> Exposition {
    let mut e = Exposition::default();
    let mut family: Option<(String, String)> = None;
    let mut eof = false;
    for line in body.lines() {
        assert!(!eof, "a line after # EOF: {line:?}");
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name type");
            let known: &[&str] = match syntax {
                Syntax::OpenMetrics => &["counter", "gauge", "histogram", "info", "unknown"],
                Syntax::Classic => &["counter", "gauge", "histogram", "untyped"],
            };
            assert!(known.contains(&kind), "{syntax:?}: type {kind:?}: {line:?}");
            let documented = match (syntax, kind) {
                (Syntax::OpenMetrics, "counter") => format!("{name}_total"),
                (Syntax::OpenMetrics, "info") => format!("{name}_info"),
                _ => name.to_owned(),
            };
            assert!(
                e.families.insert(documented, kind.to_owned()).is_none(),
                "family declared twice: {line:?}"
            );
            family = Some((name.to_owned(), kind.to_owned()));
        } else if line.starts_with("# HELP ") {
        } else if line.starts_with("# UNIT ") {
            assert_eq!(syntax, Syntax::OpenMetrics, "# UNIT in the classic format");
        } else if line == "# EOF" {
            assert_eq!(syntax, Syntax::OpenMetrics, "# EOF in the classic format");
            eof = true;
        } else {
            assert!(!line.starts_with('#'), "unknown comment line {line:?}");
            let (name, kind) = family.as_ref().expect("a sample before any # TYPE");
            let (series, value) = line.rsplit_once(' ').expect("series value");
            assert!(
                value.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&value),
                "value of {line:?}"
            );
            let sample = series.split('{').next().unwrap_or_default();
            if let Some(labels) = series.strip_prefix(sample) {
                check_labels(labels, line);
            }
            let suffix = sample.strip_prefix(name.as_str()).unwrap_or_else(|| {
                panic!("sample {sample:?} outside its family {name:?}: {line:?}")
            });
            let allowed: &[&str] = match (syntax, kind.as_str()) {
                (Syntax::OpenMetrics, "counter") => &["_total", "_created"],
                (Syntax::OpenMetrics, "info") => &["_info"],
                (_, "histogram") => &["_bucket", "_sum", "_count", "_created"],
                _ => &[""],
            };
            assert!(
                allowed.contains(&suffix),
                "{syntax:?}: {line:?} under {name} {kind}"
            );
            e.samples.insert(series.to_owned());
        }
    }
    assert_eq!(
        eof,
        syntax == Syntax::OpenMetrics,
        "# EOF at the end of OpenMetrics only"
    );
    e
}

/// `{k="v",...}` or nothing: label names and quoted values (the values the agent serves
/// hold no `",`).
fn check_labels(labels: &str, line: &str) {
    if labels.is_empty() {
        return;
    }
    let inner = labels
        .strip_prefix('{')
        .and_then(|l| l.strip_suffix('}'))
        .unwrap_or_else(|| panic!("labels of {line:?}"));
    for pair in inner.split("\",").filter(|p| !p.is_empty()) {
        let (key, _) = pair
            .split_once("=\"")
            .unwrap_or_else(|| panic!("label without a quoted value in {line:?}"));
        assert!(
            key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "label name {key:?} in {line:?}"
        );
    }
}

/// The families docs/METRICS.md lists, with whether each is always served (`always`, or
/// `on Linux` here).
fn documented_families() -> BTreeMap<String, bool> {
    let doc = read("docs/METRICS.md");
    let mut families = BTreeMap::new();
    for row in doc.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = row.split(" | ").collect();
        let name = cells[0]
            .trim_start_matches("| ")
            .trim_matches('`')
            .to_owned();
        let present = cells.get(3).copied().unwrap_or_default();
        let always = present == "always" || (present == "on Linux" && cfg!(target_os = "linux"));
        assert!(
            families.insert(name.clone(), always).is_none(),
            "{name} listed twice"
        );
    }
    assert!(families.len() > 20, "docs/METRICS.md's table: {families:?}");
    families
}

#[test]
fn the_metric_families_served_are_the_documented_ones() {
    let haproxy = require_proxy!("haproxy");
    let port = free_port();
    let mut s = Setup::new(&haproxy, SetupOptions::serving_metrics(port));
    s.start_agent();
    let out = s.cli(&["switch", "web", "green"]);
    assert!(out.status.success(), "{}", text(&out));

    // Prometheus 2.x and 3.x ask for OpenMetrics first; `PrometheusText0.0.4` alone asks
    // for the classic text.
    let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                      version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let (om_type, om_body) = scrape(&s, port, prometheus);
    assert!(
        om_type.starts_with("application/openmetrics-text; version=1.0.0"),
        "{om_type}"
    );
    let (classic_type, classic_body) = scrape(&s, port, "text/plain;version=0.0.4");
    assert!(
        classic_type.starts_with("text/plain; version=0.0.4"),
        "{classic_type}"
    );
    let om = parse(&om_body, Syntax::OpenMetrics);
    let classic = parse(&classic_body, Syntax::Classic);
    assert_eq!(
        om.families.keys().collect::<Vec<_>>(),
        classic.families.keys().collect::<Vec<_>>(),
        "both formats serve the same families"
    );
    assert_eq!(
        om.samples, classic.samples,
        "both formats serve the same series"
    );

    let documented = documented_families();
    let served: BTreeSet<&String> = om.families.keys().collect();
    let undocumented: Vec<&&String> = served
        .iter()
        .filter(|f| !documented.contains_key(**f))
        .collect();
    let missing: Vec<&String> = documented
        .iter()
        .filter(|(f, always)| **always && !served.contains(f))
        .map(|(f, _)| f)
        .collect();
    assert!(
        undocumented.is_empty() && missing.is_empty(),
        "served but not in docs/METRICS.md (add a row): {undocumented:?}; \
         listed as always served but not served: {missing:?}"
    );
    for (family, kind) in &om.families {
        let row = read("docs/METRICS.md");
        let row = row
            .lines()
            .find(|l| l.starts_with(&format!("| `{family}` |")))
            .expect("documented");
        assert!(
            row.contains(&format!("| {kind} |")),
            "{family} is a {kind}: {row}"
        );
    }
}

/// The verbs a help text lists under `Commands:` (without `help`).
fn help_verbs(args: &[&str]) -> Vec<String> {
    let out = std::process::Command::new(cutover_binary())
        .args(args)
        .arg("--help")
        .output()
        .expect("run cutover --help");
    assert!(out.status.success(), "{args:?}: {}", text(&out));
    let help = String::from_utf8(out.stdout).expect("UTF-8");
    help.lines()
        .skip_while(|l| *l != "Commands:")
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|v| *v != "help")
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_verbs_in_help_are_the_documented_ones() {
    // Every verb and sub-verb `--help` lists, e.g. `switch`, `map show`.
    let mut in_help = BTreeSet::new();
    let mut nested = BTreeSet::new();
    for verb in help_verbs(&[]) {
        let subs = help_verbs(&[&verb]);
        if subs.is_empty() {
            in_help.insert(verb);
        } else {
            nested.insert(verb.clone());
            in_help.extend(subs.into_iter().map(|s| format!("{verb} {s}")));
        }
    }
    assert!(in_help.len() > 15, "{in_help:?}");

    // The README's command-line table: the first cell of each row names one or more verbs,
    // `cutover VERB ...` then `/ VERB ...`.
    let readme = read("README.md");
    let table = readme
        .split("\n## Command line\n")
        .nth(1)
        .expect("README has a Command line section");
    let mut documented = BTreeSet::new();
    for row in table.lines().take_while(|l| !l.starts_with("## ")) {
        let Some(cell) = row.strip_prefix("| `cutover ") else {
            continue;
        };
        let cell = cell.split(" | ").next().unwrap_or_default();
        for usage in cell.split('`').step_by(2).filter(|u| !u.trim().is_empty()) {
            let mut words = usage.split_whitespace();
            let verb = words.next().unwrap_or_default().to_owned();
            let verb = match words.next() {
                Some(sub) if nested.contains(&verb) => format!("{verb} {sub}"),
                _ => verb,
            };
            documented.insert(verb);
        }
    }
    let undocumented: Vec<_> = in_help.difference(&documented).collect();
    let unknown: Vec<_> = documented.difference(&in_help).collect();
    assert!(
        undocumented.is_empty() && unknown.is_empty(),
        "in `cutover --help` but not in the README's command-line table: {undocumented:?}; \
         in the README's table but not in `cutover --help`: {unknown:?}"
    );
}
