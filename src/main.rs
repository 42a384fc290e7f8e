fn main() -> std::process::ExitCode {
    marrow::process_start();
    marrow::cli::main()
}
