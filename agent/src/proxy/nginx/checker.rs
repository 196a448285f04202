//! `nginx -T`: the config check, and what its output says. `-T` is `-t` (parse the whole
//! tree, open the files it names, bind its listeners where they are free) plus a dump of
//! every file read, from which the defined upstreams are taken.
//!
//! The check runs with `-e stderr`, so messages come on stderr whatever the compiled-in
//! error log is (and whether or not the agent may write to it). A check fails when Nginx
//! exits non-zero or prints any `[emerg]`, `[alert]` or `[crit]` line; `[warn]` and
//! `[error]` lines pass and are handed to the caller as warnings.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::path::Path;
use std::time::Duration;

use super::errorlog::{self, Level};
use crate::proxy::{run_program, CheckReport, ProgramOutput, ProxyError};

/// Longest an `nginx -T` may run.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `binary -T -e stderr [-p prefix] -c config`.
pub async fn run(
    binary: &Path,
    prefix: Option<&Path>,
    config: &Path,
) -> Result<CheckReport, ProxyError> {
    let mut args: Vec<&OsStr> = vec!["-T".as_ref(), "-e".as_ref(), "stderr".as_ref()];
    if let Some(p) = prefix {
        args.extend(["-p".as_ref(), p.as_os_str()]);
    }
    args.extend(["-c".as_ref(), config.as_os_str()]);
    let out = run_program(binary, &args, CHECK_TIMEOUT).await?;
    verdict(binary, &out)
}

/// Sorts a finished check into a report or a failure in Nginx's own words.
pub fn verdict(binary: &Path, out: &ProgramOutput) -> Result<CheckReport, ProxyError> {
    let fatal = errorlog::messages(&out.stderr, Level::Crit, None);
    if !out.status.success() || !fatal.is_empty() {
        let mut lines: Vec<String> = fatal.iter().map(ToString::to_string).collect();
        lines.extend(
            out.stderr
                .lines()
                .filter(|l| l.starts_with("nginx: ") && l.contains("test failed"))
                .map(str::to_owned),
        );
        if lines.is_empty() {
            lines.push(format!(
                "{} exited with {}: {}",
                binary.display(),
                out.status,
                out.stderr.trim()
            ));
        }
        return Err(ProxyError::CheckFailed {
            output: lines.join("\n"),
        });
    }
    Ok(CheckReport {
        warnings: errorlog::messages(&out.stderr, Level::Warn, None)
            .iter()
            .map(ToString::to_string)
            .collect(),
        elapsed: out.elapsed,
        backends: Some(upstreams(&out.stdout)),
    })
}

/// Names of the `upstream NAME { ... }` blocks in config text (a `-T` dump, whose
/// `# configuration file` headers are comments). Directives are found by tokenizing as
/// Nginx does: `#` comments, quoted strings, and `{`, `}`, `;` as tokens of their own.
pub fn upstreams(text: &str) -> BTreeSet<String> {
    let tokens = tokenize(text);
    let mut out = BTreeSet::new();
    let mut at_start = true;
    for (i, t) in tokens.iter().enumerate() {
        if at_start && t.text == "upstream" && !t.quoted {
            if let (Some(name), Some(open)) = (tokens.get(i + 1), tokens.get(i + 2)) {
                if open.text == "{" && !open.quoted {
                    out.insert(name.text.clone());
                }
            }
        }
        at_start = !t.quoted && matches!(t.text.as_str(), ";" | "{" | "}");
    }
    out
}

#[derive(Debug, PartialEq)]
struct Token {
    text: String,
    quoted: bool,
}

fn tokenize(text: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut Vec<Token>| {
        if !word.is_empty() {
            out.push(Token {
                text: std::mem::take(word),
                quoted: false,
            });
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '#' if word.is_empty() => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '"' | '\'' if word.is_empty() => {
                let mut s = String::new();
                while let Some(q) = chars.next() {
                    match q {
                        '\\' => {
                            if let Some(n) = chars.next() {
                                s.push(n);
                            }
                        }
                        q if q == c => break,
                        q => s.push(q),
                    }
                }
                out.push(Token {
                    text: s,
                    quoted: true,
                });
            }
            '{' | '}' | ';' => {
                flush(&mut word, &mut out);
                out.push(Token {
                    text: c.to_string(),
                    quoted: false,
                });
            }
            c if c.is_whitespace() => flush(&mut word, &mut out),
            '\\' => {
                word.push(c);
                if let Some(n) = chars.next() {
                    word.push(n);
                }
            }
            c => word.push(c),
        }
    }
    flush(&mut word, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    fn output(code: i32, stderr: &str, stdout: &str) -> ProgramOutput {
        ProgramOutput {
            status: std::process::ExitStatus::from_raw(code << 8),
            stdout: stdout.into(),
            stderr: stderr.into(),
            elapsed: Duration::ZERO,
        }
    }

    #[test]
    fn upstream_names_from_a_dump() {
        let dump = r#"# configuration file /etc/nginx/nginx.conf:
http {
    upstream web_blue { server 127.0.0.1:1; }
    upstream
        web_green
    {
        server 127.0.0.1:2;
    }
    # upstream commented { }
    map $x $y { upstream up; default "upstream x {"; }
    server { location / { return 200 "upstream fake {"; } }
}
# configuration file /etc/nginx/more.conf:
upstream "quoted-name" { server 10.0.0.1:80; }
"#;
        let names: Vec<String> = upstreams(dump).into_iter().collect();
        assert_eq!(names, ["quoted-name", "web_blue", "web_green"]);
    }

    #[test]
    fn a_passing_check_hands_over_warnings_and_upstreams() {
        let out = output(
            0,
            "2026/11/23 16:24:29 [warn] 533#533: could not build optimal map_hash, you should increase either map_hash_max_size: 8 or map_hash_bucket_size: 64; ignoring map_hash_bucket_size\n\
             nginx: the configuration file /x/n.conf syntax is ok\n\
             nginx: configuration file /x/n.conf test is successful\n",
            "upstream a { server 127.0.0.1:1; }\n",
        );
        let r = verdict(Path::new("/usr/sbin/nginx"), &out).unwrap();
        assert_eq!(r.warnings.len(), 1);
        assert!(r.warnings[0].starts_with("[warn] could not build optimal map_hash"));
        assert_eq!(r.backends.unwrap().len(), 1);
    }

    #[test]
    fn emerg_fails_with_nginx_words() {
        let out = output(
            1,
            "2026/11/23 16:24:29 [emerg] 1#1: unknown directive \"bogus\" in /x/.n.conf.cutover-staged:3\n\
             nginx: configuration file /x/.n.conf.cutover-staged test failed\n",
            "",
        );
        let e = verdict(Path::new("/usr/sbin/nginx"), &out)
            .unwrap_err()
            .to_string();
        assert!(e.contains("[emerg] unknown directive \"bogus\""), "{e}");
        assert!(e.contains("test failed"), "{e}");
    }

    #[test]
    fn alert_or_crit_fail_even_when_nginx_exits_zero() {
        let out = output(
            0,
            "nginx: [alert] could not open error log file: open() \"/var/log/nginx/error.log\" failed (13: Permission denied)\n\
             nginx: configuration file /x/n.conf test is successful\n",
            "",
        );
        let e = verdict(Path::new("/usr/sbin/nginx"), &out)
            .unwrap_err()
            .to_string();
        assert!(e.contains("[alert] could not open error log file"), "{e}");
    }
}
