//! The buffering metric families: what corral holds between workers and slow clients now
//! (in memory, in temp files), how often an answer or a body spilled to a temp file, and how
//! long before its client finished a worker was free.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// Seconds a worker was free before its client had the whole answer.
const FREED_BUCKETS: [f64; 12] = [
    0.0, 0.001, 0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// The handles the request path uses, resolved once; cheap to clone.
#[derive(Clone)]
pub struct BufferMetrics {
    /// Bytes of answers and bodies held in memory now, in all buffers of the process; the
    /// budget `server.buffering.memory` is checked against it.
    pub memory: IntGauge,
    /// Bytes held in temp files now.
    pub disk: IntGauge,
    /// Answers that spilled to a temp file.
    pub answers_spilled: IntCounter,
    /// Request bodies that spilled to a temp file.
    pub bodies_spilled: IntCounter,
    /// Seconds from a worker's slot being freed to its client having the whole answer.
    pub freed_early: Histogram,
}

impl BufferMetrics {
    pub(crate) fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let memory = IntGauge::new(
            "corral_buffered_memory_bytes",
            "Bytes of answers and request bodies held in memory now (budget: server.buffering.memory)",
        )?;
        let disk = IntGauge::new(
            "corral_buffered_disk_bytes",
            "Bytes of answers and request bodies held in temp files now",
        )?;
        let spilled = IntCounterVec::new(
            Opts::new(
                "corral_buffer_spills_total",
                "Answers and request bodies that went to a temp file, by kind (answer, body)",
            ),
            &["kind"],
        )?;
        let freed_early = Histogram::with_opts(
            HistogramOpts::new(
                "corral_worker_freed_early_seconds",
                "Time from a worker having given its whole answer to the client having it",
            )
            .buckets(FREED_BUCKETS.to_vec()),
        )?;
        registry.register(Box::new(memory.clone()))?;
        registry.register(Box::new(disk.clone()))?;
        registry.register(Box::new(spilled.clone()))?;
        registry.register(Box::new(freed_early.clone()))?;
        Ok(BufferMetrics {
            memory,
            disk,
            answers_spilled: spilled.with_label_values(&["answer"]),
            bodies_spilled: spilled.with_label_values(&["body"]),
            freed_early,
        })
    }
}
