//! The backend selection strategies a pool may name.

/// Backend selection strategies named in the contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StrategyKind {
    /// Plain rotation over usable backends.
    RoundRobin,
    /// nginx's smooth weighted round robin (issue #4).
    WeightedRoundRobin,
    /// Weighted random (issue #4).
    Random,
    /// Power of two choices on in-flight requests (issue #4).
    LeastRequests,
    /// Maglev consistent hashing (issue #4).
    ConsistentHash,
    /// Cookie affinity over a base strategy (issue #4).
    Sticky,
    /// Power of two choices on peak-EWMA latency times in-flight requests (issue #4).
    PeakEwma,
}

impl StrategyKind {
    /// Every strategy name, as written in config files and on the command line.
    pub const NAMES: [&'static str; 7] = [
        "round_robin",
        "weighted_round_robin",
        "random",
        "least_requests",
        "consistent_hash",
        "sticky",
        "peak_ewma",
    ];

    /// Parses a strategy name.
    pub fn from_name(name: &str) -> Option<StrategyKind> {
        Some(match name {
            "round_robin" => StrategyKind::RoundRobin,
            "weighted_round_robin" => StrategyKind::WeightedRoundRobin,
            "random" => StrategyKind::Random,
            "least_requests" => StrategyKind::LeastRequests,
            "consistent_hash" => StrategyKind::ConsistentHash,
            "sticky" => StrategyKind::Sticky,
            "peak_ewma" => StrategyKind::PeakEwma,
            _ => return None,
        })
    }

    /// The name, as written in config files.
    pub fn name(self) -> &'static str {
        match self {
            StrategyKind::RoundRobin => "round_robin",
            StrategyKind::WeightedRoundRobin => "weighted_round_robin",
            StrategyKind::Random => "random",
            StrategyKind::LeastRequests => "least_requests",
            StrategyKind::ConsistentHash => "consistent_hash",
            StrategyKind::Sticky => "sticky",
            StrategyKind::PeakEwma => "peak_ewma",
        }
    }

    /// Whether this build implements the strategy. Unimplemented ones are refused at
    /// validation rather than silently replaced by round robin; every one is implemented.
    pub fn is_available(self) -> bool {
        true
    }
}
