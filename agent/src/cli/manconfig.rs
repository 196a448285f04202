//! `cutover.toml(5)`: the config reference as a man page, written from the commented
//! examples that document every key with its default (`examples/cutover.toml` for an
//! HAProxy host, `examples/cutover-nginx.toml` for an Nginx host), so the page says what
//! they say. Comment prose becomes paragraphs; keys, commented-out keys and indented
//! snippets become literal blocks; each table header (`[proxy]`, `[[services]]`) a
//! subsection.

use std::io::{self, Write};

/// The HAProxy example, as shipped in the package's documentation.
const HAPROXY_EXAMPLE: &str = include_str!("../../../examples/cutover.toml");
/// The Nginx example.
const NGINX_EXAMPLE: &str = include_str!("../../../examples/cutover-nginx.toml");

const HEAD: &str = r#".TH cutover.toml 5 "" "" "cutover manual"
.SH NAME
cutover.toml \- configuration of the cutover agent
.SH SYNOPSIS
\fI/etc/cutover/cutover.toml\fR
.SH DESCRIPTION
The agent's config, in TOML. Unknown keys are refused. \fBcutover check\fR validates it
without side effects (it renders every template into a staging directory, checks every map
and runs the proxy's own checker on the staged config), prints every problem with where it
is, and exits 64 on a bad config. \fBsystemctl reload cutover\fR (or SIGHUP) reads it
again; a config that does not load, render, validate and apply is refused and the old one
stays in force.
.PP
The sections below are the commented examples shipped in
\fI/usr/share/doc/cutover/examples/\fR: every key with its default, commented out where the
default is used.
"#;

const TAIL: &str = r#".SH "SEE ALSO"
\fBcutover\fR(1), \fBhaproxy\fR(1), \fBnginx\fR(8), \fBsystemd.service\fR(5)
"#;

/// Writes `cutover.toml(5)`.
pub fn page(out: &mut dyn Write) -> io::Result<()> {
    let mut text = String::from(HEAD);
    text.push_str(".SH \"AN HAPROXY HOST\"\n");
    text.push_str(&roff(HAPROXY_EXAMPLE));
    text.push_str(".SH \"AN NGINX HOST\"\n");
    text.push_str(&roff(NGINX_EXAMPLE));
    text.push_str(TAIL);
    out.write_all(text.as_bytes())
}

/// One line of an example, by what it becomes on the page.
#[derive(Debug, PartialEq)]
enum Line<'a> {
    /// `[agent]`, `[[services]]`.
    Table(&'a str),
    /// A comment that explains.
    Prose(&'a str),
    /// A key (set or commented out), a commented-out table, or an indented snippet.
    Code(&'a str),
    Blank,
}

fn classify(line: &str) -> Line<'_> {
    let line = line.trim_end();
    if line.is_empty() {
        return Line::Blank;
    }
    if line.starts_with('[') {
        return Line::Table(line);
    }
    let Some(comment) = line.strip_prefix('#') else {
        return Line::Code(line);
    };
    let text = comment.strip_prefix(' ').unwrap_or(comment);
    let looks_like_key = text.split_once(" = ").is_some_and(|(k, _)| {
        !k.is_empty()
            && k.bytes()
                .all(|b| b.is_ascii_lowercase() || b"_.".contains(&b))
    });
    if text.starts_with("  ") {
        // A snippet for another file (haproxy.cfg, /etc/default/haproxy).
        Line::Code(text)
    } else if text.starts_with('[') || looks_like_key {
        // Commented out: the default, or an optional part.
        Line::Code(line)
    } else {
        Line::Prose(text)
    }
}

/// Escapes text for roff: backslashes, hyphens, and a leading control character.
fn escape(text: &str) -> String {
    let escaped = text.replace('\\', "\\e").replace('-', "\\-");
    if escaped.starts_with('.') || escaped.starts_with('\'') {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}

/// The example as roff: paragraphs, literal blocks and subsections.
fn roff(example: &str) -> String {
    let mut out = String::new();
    let mut in_code = false;
    let mut paragraph_open = false;
    for line in example.lines() {
        let line = classify(line);
        if in_code && !matches!(line, Line::Code(_)) {
            out.push_str(".fi\n.RE\n");
            in_code = false;
        }
        match line {
            Line::Table(t) => {
                out.push_str(&format!(".SS \"{}\"\n", escape(t)));
                paragraph_open = false;
            }
            Line::Prose(p) => {
                if !paragraph_open {
                    out.push_str(".PP\n");
                    paragraph_open = true;
                }
                let words: Vec<&str> = p.split_whitespace().collect();
                out.push_str(&escape(&words.join(" ")));
                out.push('\n');
            }
            Line::Code(c) => {
                if !in_code {
                    out.push_str(".RS 4\n.nf\n");
                    in_code = true;
                }
                out.push_str(&escape(c));
                out.push('\n');
                paragraph_open = false;
            }
            Line::Blank => paragraph_open = false,
        }
    }
    if in_code {
        out.push_str(".fi\n.RE\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_sorted_into_prose_keys_and_tables() {
        assert_eq!(classify("[agent]"), Line::Table("[agent]"));
        assert_eq!(classify("[[services]]"), Line::Table("[[services]]"));
        assert_eq!(
            classify("kind = \"haproxy\""),
            Line::Code("kind = \"haproxy\"")
        );
        assert_eq!(
            classify("# max_line = 65536"),
            Line::Code("# max_line = 65536")
        );
        assert_eq!(classify("# [cluster]"), Line::Code("# [cluster]"));
        assert_eq!(
            classify("#   stats socket /run/haproxy/admin.sock"),
            Line::Code("  stats socket /run/haproxy/admin.sock")
        );
        assert_eq!(
            classify("# The main config HAProxy is started with (`-f`)."),
            Line::Prose("The main config HAProxy is started with (`-f`).")
        );
        assert_eq!(classify(""), Line::Blank);
        assert_eq!(escape(".x-y\\z"), "\\&.x\\-y\\ez");
    }

    #[test]
    fn the_page_carries_every_key_of_both_examples() {
        let mut out = Vec::new();
        page(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with(".TH cutover.toml 5"), "{text}");
        assert!(text.contains("\\fBcutover check\\fR validates"), "{text}");
        for needle in [
            ".SS \"[agent]\"",
            ".SS \"[proxy]\"",
            ".SS \"[[services]]\"",
            "\\fI/etc/cutover/cutover.toml\\fR",
            "kind = \"nginx\"",
        ] {
            assert!(text.contains(needle), "{needle} missing");
        }
        for example in [HAPROXY_EXAMPLE, NGINX_EXAMPLE] {
            for line in example.lines() {
                if let Line::Code(code) = classify(line) {
                    assert!(text.contains(&escape(code)), "{code} missing");
                }
            }
        }
        // No line of the page starts a roff request by accident.
        for line in text.lines() {
            if let Some(request) = line.strip_prefix('.') {
                let name = request.split_whitespace().next().unwrap_or("");
                assert!(
                    ["TH", "SH", "SS", "PP", "RS", "RE", "nf", "fi"].contains(&name),
                    "{line}"
                );
            }
        }
    }
}
