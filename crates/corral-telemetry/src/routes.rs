//! The per-route metric families of `[[routes]]`: requests by route and status class, and
//! their latency by route, for pool, static and redirect routes alike. Routes come from the
//! config, so the label's values are bounded by it; without `[[routes]]` nothing is
//! counted here (the pool families say it all).

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry,
};

use crate::metrics::{LATENCY_BUCKETS, STATUS_CLASSES};

/// The families, registered once.
pub(crate) struct RouteFamilies {
    requests: IntCounterVec,
    latency: HistogramVec,
}

/// One route's handles, resolved once per config so the request path does no label lookup.
#[derive(Clone)]
pub struct RouteMetrics {
    by_class: [IntCounter; 5],
    latency: Histogram,
}

impl RouteMetrics {
    /// Counts one finished request of the route.
    pub fn observe(&self, status: u16, seconds: f64) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.by_class[class].inc();
        self.latency.observe(seconds);
    }

    /// Requests answered so far, and how many of them 5xx.
    pub fn answered(&self) -> (u64, u64) {
        let total = self.by_class.iter().map(IntCounter::get).sum();
        (total, self.by_class[4].get())
    }
}

impl RouteFamilies {
    pub(crate) fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let requests = IntCounterVec::new(
            Opts::new(
                "corral_route_requests_total",
                "Requests by [[routes]] route and status class (pool, static and redirect routes)",
            ),
            &["route", "status"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "corral_route_request_duration_seconds",
                "Time from reading the request head to the end of the response, by [[routes]] route",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["route"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        Ok(RouteFamilies { requests, latency })
    }

    pub(crate) fn route(&self, route: &str) -> RouteMetrics {
        RouteMetrics {
            by_class: STATUS_CLASSES.map(|c| self.requests.with_label_values(&[route, c])),
            latency: self.latency.with_label_values(&[route]),
        }
    }
}
