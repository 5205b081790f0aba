//! The `egret` binary.

/// mimalloc: the proxy allocates and frees many small objects per request (headers, decoded WAF
/// variables); glibc malloc spent a quarter of the WAF path's instructions on them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    egret::cli::main()
}
