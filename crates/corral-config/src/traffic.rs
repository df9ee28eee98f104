//! Where new requests go, as one value: all to one pool, or a split by weight (a canary).
//! The file's `[routing]`, a `corral switch`, a rollback and the record kept over restarts
//! are all a [`Traffic`], so they compare and convert in one place.

use crate::model::Routing;

impl Routing {
    /// Where the file sends traffic, in the form a run-time switch also takes.
    pub fn traffic(&self) -> Traffic {
        Traffic {
            active: self.active.clone(),
            weights: self.weights.clone(),
        }
    }
}

/// Where new requests go: all to one pool, or split by weight (a canary). What the config
/// says, what `corral switch` asks for, and what a rollback restores are all one of these.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Traffic {
    /// The primary pool: the only one without weights, the heaviest with them.
    pub active: String,
    /// Each pool's weight when traffic is split, in the order given; empty otherwise.
    pub weights: Vec<(String, u32)>,
}

impl Traffic {
    /// All traffic to `pool`.
    pub fn to(pool: &str) -> Traffic {
        Traffic {
            active: pool.to_string(),
            weights: Vec::new(),
        }
    }

    /// A split by `weights` (each 0 or more, not all 0); the primary is the heaviest pool
    /// (the first of equals). Pools with weight 0 are left out; a single pool left is no
    /// split at all.
    pub fn split(weights: &[(String, u32)]) -> Option<Traffic> {
        let weights: Vec<(String, u32)> = weights.iter().filter(|(_, w)| *w > 0).cloned().collect();
        let mut primary: Option<&(String, u32)> = None;
        for entry in &weights {
            if primary.is_none_or(|p| entry.1 > p.1) {
                primary = Some(entry);
            }
        }
        let active = primary?.0.clone();
        Some(if weights.len() == 1 {
            Traffic::to(&active)
        } else {
            Traffic { active, weights }
        })
    }

    /// `blue=90,green=10`, as `corral switch --weights` takes it.
    pub fn parse_weights(text: &str) -> Result<Traffic, String> {
        let mut weights = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((pool, weight)) = part.split_once('=') else {
                return Err(format!(
                    "{part:?}: expected POOL=WEIGHT, e.g. blue=90,green=10"
                ));
            };
            let weight = weight
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|w| *w <= 10_000)
                .ok_or_else(|| {
                    format!("{part:?}: the weight must be an integer from 0 to 10000")
                })?;
            weights.push((pool.trim().to_string(), weight));
        }
        Traffic::split(&weights).ok_or_else(|| {
            format!("{text:?}: no pool gets a weight above 0; expected e.g. blue=90,green=10")
        })
    }

    /// The share of new requests `pool` gets, 0 to 1.
    pub fn share(&self, pool: &str) -> f64 {
        if self.weights.is_empty() {
            return if self.active == pool { 1.0 } else { 0.0 };
        }
        let total: u32 = self.weights.iter().map(|(_, w)| w).sum();
        let mine: u32 = self
            .weights
            .iter()
            .filter(|(p, _)| p == pool)
            .map(|(_, w)| w)
            .sum();
        f64::from(mine) / f64::from(total.max(1))
    }

    /// The pools that get any request.
    pub fn pools(&self) -> Vec<&str> {
        if self.weights.is_empty() {
            vec![self.active.as_str()]
        } else {
            self.weights.iter().map(|(p, _)| p.as_str()).collect()
        }
    }
}

impl std::fmt::Display for Traffic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.weights.is_empty() {
            return f.write_str(&self.active);
        }
        let parts: Vec<String> = self
            .weights
            .iter()
            .map(|(p, w)| format!("{p}={w}"))
            .collect();
        f.write_str(&parts.join(","))
    }
}
