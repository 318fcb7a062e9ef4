//! `cheops`: the node daemon and its command-line client in one binary.

use clap::Parser;

/// Cheops makes any application geo-distributed: operations sent for a
/// resource are replicated to every site where it lives, reconciled with the
/// resource's resolution matrix and run there.
#[derive(Parser)]
#[command(name = "cheops", version)]
struct Cli {}

fn main() {
    Cli::parse();
}
