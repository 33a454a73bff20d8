//! The `tailgate` binary: the command line in `tailgate::cli`.

fn main() -> std::process::ExitCode {
    tailgate::cli::main()
}
