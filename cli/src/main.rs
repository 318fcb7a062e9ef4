//! `cheops`: the node daemon and its command-line client in one binary.

mod client;
mod serve;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Cheops makes any application geo-distributed: operations sent for a
/// resource are replicated to every site where it lives, reconciled with the
/// resource's resolution matrix and run there.
#[derive(Parser)]
#[command(name = "cheops", version, after_help = BARE_FORM)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The original's README calls the client without a subcommand; that form
/// stays, and is `exec`.
const BARE_FORM: &str = "Without a subcommand, the flags are those of `exec`:
  cheops --id deployment-id --sites 'site1&site2&site3' \\
    --command \"kubectl apply -f {recipe.yml}\" --config config.json --type create";

#[derive(Subcommand)]
enum Command {
    /// Send an operation for a resource to its sites and print each site's
    /// reply as it arrives.
    Exec(Box<client::ExecArgs>),
    /// Send an HTTP request as an operation: each site sends it to its own
    /// application (httpie's items: field=value, field:=json, Header:value,
    /// name==value, @file).
    Http(Box<client::HttpArgs>),
    /// Send a Redis command as an operation: each site sends it to its own
    /// Redis.
    Redis(Box<client::RedisArgs>),
    /// Run a read-only command on the sites of a resource and print what each
    /// one answered (nothing is stored).
    Show(Box<client::ShowArgs>),
    /// Print every operation ever accepted for a resource, oldest first,
    /// with each site's reply status.
    History(Box<client::HistoryArgs>),
    /// Wait until every site of a resource has replied to an operation
    /// (after an exec whose sites did not all answer in time).
    Wait(Box<client::WaitArgs>),
    /// Print what happens to a resource, or to every resource of a node, as
    /// it happens.
    Watch(Box<client::WatchArgs>),
    /// Run this site's daemon: the API, Chephren (the web UI), the dump
    /// listener when enabled, and the loop that follows the local CouchDB
    /// and runs operations.
    Serve(Box<serve::ServeArgs>),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse_from(with_default_subcommand(std::env::args_os())) {
        Ok(cli) => cli,
        Err(error) => {
            // Help and version go to stdout and are no failure; anything
            // else is a usage error (EX_USAGE), not clap's default 2.
            let _ = error.print();
            return if error.use_stderr() {
                ExitCode::from(client::EXIT_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match cli.command {
        Command::Exec(args) => client::exec(*args),
        Command::Http(args) => client::http_operation(*args),
        Command::Redis(args) => client::redis_operation(*args),
        Command::Show(args) => client::show(*args),
        Command::History(args) => client::history(*args),
        Command::Wait(args) => client::wait(*args),
        Command::Watch(args) => client::watch(*args),
        Command::Serve(args) => serve::main(*args),
    }
}

/// `cheops --id …` → `cheops exec --id …`: a first argument that is a flag,
/// other than help or version, starts the bare form. Rewriting the arguments
/// (rather than flattening exec's flags into the top level) keeps clap's
/// errors and help those of `exec`.
fn with_default_subcommand(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut args: Vec<OsString> = args.into_iter().collect();
    let bare = args.get(1).and_then(|a| a.to_str()).is_some_and(|first| {
        first.starts_with('-') && !matches!(first, "-h" | "--help" | "-V" | "--version")
    });
    if bare {
        args.insert(1, "exec".into());
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn args(list: &[&str]) -> Vec<String> {
        with_default_subcommand(list.iter().map(OsString::from))
            .into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn a_leading_flag_means_exec() {
        assert_eq!(
            args(&["cheops", "--id", "x", "--type", "t"]),
            ["cheops", "exec", "--id", "x", "--type", "t"]
        );
        assert_eq!(args(&["cheops", "--id=x"]), ["cheops", "exec", "--id=x"]);
    }

    #[test]
    fn subcommands_help_and_version_are_left_alone() {
        for list in [
            &["cheops"][..],
            &["cheops", "serve", "--site", "s"],
            &["cheops", "show", "--id", "x"],
            &["cheops", "--help"],
            &["cheops", "-h"],
            &["cheops", "--version"],
            &["cheops", "-V"],
        ] {
            assert_eq!(args(list), list);
        }
    }

    #[test]
    fn show_takes_a_shell_command_or_a_kind_and_its_words() {
        let parse = |list: &[&str]| Cli::try_parse_from(list).map(|cli| cli.command);
        let Ok(Command::Show(show)) = parse(&[
            "cheops", "show", "--id", "x", "--kind", "redis", "LRANGE", "l", "-1",
        ]) else {
            panic!("a Redis show parses");
        };
        assert_eq!(format!("{:?}", show.kind), "Some(Redis)");
        assert_eq!(show.words, ["LRANGE", "l", "-1"]);
        for refused in [
            &["cheops", "show", "--id", "x"][..],
            &["cheops", "show", "--id", "x", "--kind", "http"],
            &["cheops", "show", "--id", "x", "--command", "ls", "extra"],
            &[
                "cheops",
                "show",
                "--id",
                "x",
                "--command",
                "ls",
                "--kind",
                "redis",
                "GET",
            ],
        ] {
            assert!(parse(refused).is_err(), "{refused:?}");
        }
    }

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
