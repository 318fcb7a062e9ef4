//! `cheops`: the node daemon and its command-line client in one binary.

mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Cheops makes any application geo-distributed: operations sent for a
/// resource are replicated to every site where it lives, reconciled with the
/// resource's resolution matrix and run there.
#[derive(Parser)]
#[command(name = "cheops", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run this site's daemon: the API, the dump listener, and the loop that
    /// follows the local CouchDB and runs operations.
    Serve(Box<serve::ServeArgs>),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve::main(*args),
    }
}
