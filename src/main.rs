fn main() -> std::process::ExitCode {
    smshub::cli::main()
}
