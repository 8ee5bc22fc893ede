//! The `aloud` binary: parse the command line, run it, map errors to an exit code.

// mimalloc instead of glibc's malloc: a proxy allocates and frees many small, short-lived buffers
// per request, and glibc's allocator was 12% of a capture-off profile at saturation
// (benches/README.md, "Results after the speed work on issue 7": +9% req/s).
// Its arenas commit lazily (`.cargo/config.toml`), or idle RSS grows by 7 MB.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    aloud::cli::main()
}
