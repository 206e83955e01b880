//! The registry's connection, observed: each command's (or pipeline's) round trip goes into
//! `starling_redis_command_seconds`, and a command that could not reach Redis (I/O, refused,
//! dropped, timed out) counts in `starling_redis_errors_total`. Replies Redis gave — even errors,
//! such as a script not loaded yet — are not trouble with Redis.

use std::time::Instant;

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::{Cmd, Pipeline, RedisError, RedisFuture, Value};
use starling_telemetry::Metrics;

/// A cheap handle onto the registry's one multiplexed connection.
#[derive(Clone)]
pub(crate) struct Observed(pub ConnectionManager);

fn observe<T>(started: Instant, result: &Result<T, RedisError>) {
    let metrics = Metrics::global();
    metrics.redis_command_seconds.observe(started.elapsed().as_secs_f64());
    if let Err(error) = result
        && (error.is_io_error() || error.is_connection_dropped() || error.is_connection_refusal() || error.is_timeout())
    {
        metrics.redis_errors.inc();
    }
}

impl ConnectionLike for Observed {
    fn req_packed_command<'a>(&'a mut self, command: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let started = Instant::now();
            let result = self.0.req_packed_command(command).await;
            observe(started, &result);
            result
        })
    }

    fn req_packed_commands<'a>(&'a mut self, pipeline: &'a Pipeline, offset: usize, count: usize) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let started = Instant::now();
            let result = self.0.req_packed_commands(pipeline, offset, count).await;
            observe(started, &result);
            result
        })
    }

    fn get_db(&self) -> i64 {
        self.0.get_db()
    }
}
