//! `trainer`: the command-line entry point (work in progress: the subcommands arrive with
//! issue 7).

fn main() {
    eprintln!("trainer: no subcommand is implemented yet (issue 7)");
    std::process::exit(2);
}
