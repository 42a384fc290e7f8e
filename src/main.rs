fn main() -> std::process::ExitCode {
    marrow::process_start();
    // Piped into `head`, a listing should end quietly rather than panic on the closed pipe.
    // SAFETY: restoring the default disposition of a signal before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    marrow::db::configure_sqlite();
    marrow::cli::main()
}

// SQLite and the imports allocate many small blocks; mimalloc does that faster than glibc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
