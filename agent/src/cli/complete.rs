//! Service names in the shell completions: the scripts clap writes know the grammar only,
//! so each gets a function that asks the running agent (`cutover services`, passing on
//! `--config` and `--socket` from the line being completed) when the word to complete is
//! the SERVICE of a routing verb. No agent, no names: the function prints nothing.

use clap_complete::Shell;

/// The verbs whose first argument is a service, from the grammar: those with a positional
/// argument named `service`.
fn service_verbs(cmd: &clap::Command) -> Vec<String> {
    cmd.get_subcommands()
        .filter(|s| {
            s.get_arguments()
                .any(|a| a.is_positional() && a.get_id() == "service")
        })
        .map(|s| s.get_name().to_owned())
        .collect()
}

/// The global options that take a value (`--config`, `-x` ...), so a word after one is
/// not taken for the verb.
fn value_options(cmd: &clap::Command) -> Vec<String> {
    let mut out = Vec::new();
    for a in cmd.get_arguments() {
        if !a.get_action().takes_values() {
            continue;
        }
        if let Some(long) = a.get_long() {
            out.push(format!("--{long}"));
        }
        if let Some(short) = a.get_short() {
            out.push(format!("-{short}"));
        }
    }
    out
}

/// `script`, clap's completion for `shell`, completing service names as well.
pub fn with_service_names(shell: Shell, cmd: &clap::Command, script: String) -> String {
    let verbs = service_verbs(cmd);
    match shell {
        Shell::Bash => format!(
            "{script}{}",
            BASH.replace("@VERBS@", &verbs.join("|"))
                .replace("@VALUE_OPTIONS@", &value_options(cmd).join("|"))
        ),
        Shell::Zsh => {
            let script = script.replace("':service:_default'", "':service:_cutover_services'");
            // Defined before the lines at the end that run or register `_cutover`.
            match script.split_once('\n') {
                Some((first, rest)) => format!("{first}\n{ZSH}{rest}"),
                None => script,
            }
        }
        Shell::Fish => format!("{script}{}", FISH.replace("@VERBS@", &verbs.join(" "))),
        _ => script,
    }
}

const BASH: &str = r#"
# Service names from the running agent (`cutover services`) as the SERVICE of a routing
# verb; everything else as above.
_cutover_with_services() {
    local i word verb="" verb_at=0 args=()
    for ((i = 1; i < COMP_CWORD; i++)); do
        word="${COMP_WORDS[i]}"
        case "$word" in
            --config|--socket)
                args+=("$word" "${COMP_WORDS[i+1]}")
                ((i++))
                continue
                ;;
            @VALUE_OPTIONS@)
                ((i++))
                continue
                ;;
            -*) continue ;;
        esac
        if [[ -z "$verb" ]]; then
            verb="$word"
            verb_at=$i
        fi
    done
    case "$verb" in
        @VERBS@)
            if ((COMP_CWORD == verb_at + 1)) && [[ "${COMP_WORDS[COMP_CWORD]}" != -* ]]; then
                local names
                names="$(cutover "${args[@]}" services 2>/dev/null)"
                COMPREPLY=($(compgen -W "$names" -- "${COMP_WORDS[COMP_CWORD]}"))
                return 0
            fi
            ;;
    esac
    _cutover "$@"
}
complete -F _cutover_with_services -o bashdefault -o default cutover
"#;

const ZSH: &str = r#"
# Service names from the running agent (`cutover services`).
(( $+functions[_cutover_services] )) ||
_cutover_services() {
    local -a names args
    local i
    for ((i = 2; i < CURRENT; i++)); do
        case ${words[i]} in
            --config|--socket) args+=(${words[i]} ${(Q)words[i+1]}) ;;
        esac
    done
    names=(${(f)"$(_call_program services cutover ${args} services 2>/dev/null)"})
    _describe -t services 'service' names
}
"#;

const FISH: &str = r#"
# Service names from the running agent (`cutover services`) as the SERVICE of a routing verb.
function __fish_cutover_wants_service
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_cutover_global_optspecs) -- $cmd 2>/dev/null
    or return 1
    test (count $argv) -eq 1; and contains -- $argv[1] @VERBS@
end

function __fish_cutover_service_names
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_cutover_global_optspecs) -- $cmd 2>/dev/null
    set -l args
    set -q _flag_config; and set -a args --config $_flag_config
    set -q _flag_socket; and set -a args --socket $_flag_socket
    cutover $args services 2>/dev/null
end

complete -c cutover -n __fish_cutover_wants_service -f -a "(__fish_cutover_service_names)"
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_routing_verbs_take_a_service_and_the_value_options_are_known() {
        let mut cmd = crate::cli::Cli::command();
        cmd.build();
        let verbs = service_verbs(&cmd);
        for verb in [
            "switch", "rollback", "canary", "promote", "abort", "drain", "undrain",
        ] {
            assert!(verbs.contains(&verb.to_owned()), "{verb} not in {verbs:?}");
        }
        assert!(!verbs.contains(&"status".to_owned()));
        let options = value_options(&cmd);
        for o in ["--config", "--socket", "--timeout", "--remote"] {
            assert!(options.contains(&o.to_owned()), "{o} not in {options:?}");
        }
        assert!(!options.contains(&"--json".to_owned()), "{options:?}");
    }
}
