//! The `corral` binary: parses the command line and hands over to [`run`] or [`check`].
//! Exit codes: 0 success, 1 runtime failure, 64 invalid config or usage.

mod announce;
mod cli;
mod client;
mod config_watch;
mod listeners;
mod master;
mod memory;
mod reload;
mod reload_wait;
mod routing_state;
mod run;
mod serve;
mod services;
mod signals;
mod stop;
mod switch;
mod tls;
mod upgrade;
mod wiring;

use std::process::ExitCode;

use clap::Parser;

/// mimalloc: the proxy allocates per request (headers, sessions); glibc malloc cost ~14% of
/// CPU samples in profiles, mimalloc about a third of that.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    upgrade::remember_command();
    corral_proxy::set_memory_release(memory::release);
    cli::Cli::parse().run()
}
