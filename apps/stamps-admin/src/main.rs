//! `stamps-admin`: the admin command line of stamps (merchants, users,
//! static tokens, JWT revocation, key rotation, audit, export and import). See `stamps-admin --help`.
//!
//! This file is glue: [`cli`] parses ([`args`] reads the values that are
//! more than a string), [`commands`] runs against the store (with
//! [`jwt_inspect`] and [`token_check`] for the two commands that decide
//! something, [`token_import`] for the tokens of an existing deployment,
//! [`location`] for the settings of the store named, and [`audit_trail`]
//! recording each change), [`outcome`] is
//! what a command produced, [`output`] prints it.

mod args;
mod audit_trail;
mod cli;
mod commands;
mod error;
mod jwt_inspect;
mod location;
mod outcome;
mod output;
mod token_check;
mod token_import;

use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::parse();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match commands::run(&cli, &mut out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            report(&e);
            ExitCode::FAILURE
        }
    }
}

/// Prints `error: <message>` as exactly one line on stderr.
fn report(e: &error::AdminError) {
    let message: String = e
        .to_string()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    // Nothing is left to tell if stderr itself is gone.
    let _ = writeln!(std::io::stderr(), "error: {message}");
}
