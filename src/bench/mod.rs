//! Benchmark harness (being written): recall-versus-latency sweeps per granularity.
