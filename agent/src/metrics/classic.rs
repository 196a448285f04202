//! The classic Prometheus text format (version 0.0.4), for scrapers that ask for it, and
//! the choice between it and OpenMetrics by a request's `Accept` header.
//!
//! The classic text is converted from the registry's OpenMetrics encoding, line by line:
//! the two formats carry the same samples and differ in their metadata. A counter family
//! `x` (samples `x_total`) becomes `# HELP x_total` / `# TYPE x_total counter`; an info
//! family `x` (sample `x_info`) becomes the gauge `x_info`; `unknown` is `untyped`; `# UNIT`
//! lines, counters' `_created` samples, exemplars and the closing `# EOF` have no classic
//! form and are left out. Help texts are written as registered (they hold no backslash or
//! line break, which the two formats would escape differently).

/// Content type of the classic text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether a request with these `Accept` header values prefers the classic text format:
/// `text/plain` with a higher quality than `application/openmetrics-text` (or without the
/// latter). No header, `*/*` or equal qualities get OpenMetrics.
pub fn prefers_classic<'a>(accept: impl IntoIterator<Item = &'a str>) -> bool {
    let (mut openmetrics, mut plain) = (0.0_f64, 0.0_f64);
    for range in accept.into_iter().flat_map(|v| v.split(',')) {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or_default().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
            .map_or(Some(1.0), |(_, v)| v.trim().parse::<f64>().ok())
            .filter(|q| (0.0..=1.0).contains(q))
            .unwrap_or(0.0);
        match media.as_str() {
            "application/openmetrics-text" => openmetrics = openmetrics.max(q),
            "text/plain" => plain = plain.max(q),
            _ => {}
        }
    }
    plain > 0.0 && plain > openmetrics
}

/// The classic text of an OpenMetrics exposition (see the module doc).
pub fn from_openmetrics(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    // The HELP line waits for its TYPE line, which decides the classic name.
    let mut help: Option<(&str, &str)> = None;
    let mut counter: Option<String> = None;
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
            help = Some((name, text));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (family, kind) = rest.split_once(' ').unwrap_or((rest, "unknown"));
            let (name, kind) = match kind {
                "counter" => (format!("{family}_total"), "counter"),
                "info" => (format!("{family}_info"), "gauge"),
                "gauge" | "histogram" | "summary" => (family.to_owned(), kind),
                "gaugehistogram" => (family.to_owned(), "histogram"),
                "stateset" => (family.to_owned(), "gauge"),
                _ => (family.to_owned(), "untyped"),
            };
            counter = (kind == "counter").then(|| family.to_owned());
            if let Some((_, text)) = help.take().filter(|(h, _)| *h == family) {
                out.push_str(&format!("# HELP {name} {text}\n"));
            }
            out.push_str(&format!("# TYPE {name} {kind}\n"));
        } else if line.starts_with('#') {
            // `# UNIT`, `# EOF`: nothing in the classic format.
        } else if !line.is_empty() {
            let created = counter
                .as_deref()
                .is_some_and(|c| sample_name(line) == format!("{c}_created"));
            if !created {
                out.push_str(without_exemplar(line));
                out.push('\n');
            }
        }
    }
    out
}

/// The metric name a sample line starts with.
fn sample_name(line: &str) -> &str {
    let end = line.find(['{', ' ']).unwrap_or(line.len());
    &line[..end]
}

/// A sample line without its exemplar (` # {...} value`), which follows the labels and the
/// value; a `#` inside a quoted label value is not one.
fn without_exemplar(line: &str) -> &str {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '#' if !quoted => return line[..i].trim_end(),
            _ => {}
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_accept_header_chooses_the_format() {
        // Prometheus 2.x and 3.x by default.
        assert!(!prefers_classic(["application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"]));
        // `scrape_protocols: [PrometheusText0.0.4]`, and Prometheus before 2.5.
        assert!(prefers_classic(["text/plain;version=0.0.4"]));
        assert!(prefers_classic([
            "text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
        ]));
        assert!(prefers_classic([
            "application/openmetrics-text; q=0.2",
            "Text/Plain; q=0.9"
        ]));
        for openmetrics in [
            &[][..],
            &["*/*"],
            &["text/plain;q=0.5, application/openmetrics-text;q=0.5"],
            &["text/plain;q=0"],
            &["text/plain;q=abc"],
            &["text/html"],
        ] {
            assert!(
                !prefers_classic(openmetrics.iter().copied()),
                "{openmetrics:?}"
            );
        }
    }

    #[test]
    fn counters_info_units_and_eof_take_their_classic_form() {
        let om = "# HELP x_switches Switches.\n# TYPE x_switches counter\n\
                  x_switches_total{service=\"a#b\"} 3 # {trace_id=\"1\"} 1.0\n\
                  x_switches_created{service=\"a\"} 1.7e9\n\
                  # HELP x_wait_seconds Wait.\n# TYPE x_wait_seconds histogram\n\
                  # UNIT x_wait_seconds seconds\nx_wait_seconds_sum 0.5\n\
                  x_wait_seconds_count 1\nx_wait_seconds_bucket{le=\"+Inf\"} 1\n\
                  # HELP x_build Build.\n# TYPE x_build info\nx_build_info{version=\"1\"} 1\n\
                  # HELP x_odd Odd.\n# TYPE x_odd unknown\nx_odd 1\n# EOF\n";
        assert_eq!(
            from_openmetrics(om),
            "# HELP x_switches_total Switches.\n# TYPE x_switches_total counter\n\
             x_switches_total{service=\"a#b\"} 3\n\
             # HELP x_wait_seconds Wait.\n# TYPE x_wait_seconds histogram\n\
             x_wait_seconds_sum 0.5\nx_wait_seconds_count 1\nx_wait_seconds_bucket{le=\"+Inf\"} 1\n\
             # HELP x_build_info Build.\n# TYPE x_build_info gauge\nx_build_info{version=\"1\"} 1\n\
             # HELP x_odd Odd.\n# TYPE x_odd untyped\nx_odd 1\n"
        );
    }
}
