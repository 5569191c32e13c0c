//! Not built yet: a later issue fills this binary. It refuses to run rather
//! than pretend to work.
fn main() -> std::process::ExitCode {
    eprintln!("{}: not implemented yet", env!("CARGO_PKG_NAME"));
    std::process::ExitCode::FAILURE
}
