fn main() -> std::process::ExitCode {
    marrow::cli::main()
}
