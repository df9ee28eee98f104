//! The ticket a request draws when traffic is split between pools, for
//! `RoutingTable::route`: a request-path counter, so it lives with the proxy.

/// A request's ticket: a per-thread golden-ratio sequence, whose values cover `u32` evenly
/// over any run of requests, so a 10% canary gets 10% of every few hundred requests rather
/// than 10% on average. Per thread, so drawing one touches no shared cache line.
pub fn next_ticket() -> u32 {
    thread_local! {
        static NEXT: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
    }
    NEXT.with(|n| {
        let v = n.get().wrapping_add(0x9E37_79B9);
        n.set(v);
        v
    })
}
